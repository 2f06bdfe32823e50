"""benchmarks/bench_early_stopping.py: the tiny configuration end to end."""

import pytest

pd = pytest.importorskip("pandas")


def test_tiny_run_scores_every_configuration(load_script, tmp_path):
    bench = load_script("bench_early_stopping")
    assert bench.main(["--tiny", "--n-jobs", "1", "--out-dir", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "results.csv")
    assert set(frame.task) == {"wine", "diabetes"}
    assert set(frame.config) == set(bench.configs(3))
    assert frame.groupby("task").size().tolist() == [7, 7]
    classifier = frame[frame.task == "wine"]
    assert classifier.score.between(0, 1).all() and (classifier.log_loss > 0).all()
    pruned = frame[frame.config.str.startswith("pruned_r0.8")]
    assert (pruned.sparsity - 0.8).abs().max() < 1e-3
    assert "| wine | pruned_r0.5_es |" in (tmp_path / "summary.md").read_text()
