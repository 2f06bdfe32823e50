"""benchmarks/reproduce_paper.py: a tiny configuration end to end, and its helpers."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("reproduce_paper")


@pytest.fixture(scope="module")
def tiny_run(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    assert bench.main(["--tiny", "--out-dir", str(out)]) == 0
    return out


def test_tiny_run_writes_every_row(tiny_run):
    frame = pd.read_csv(tiny_run / "results.csv")
    assert list(frame.columns[:9]) == ["task", "dataset", "architecture", "noise", "seed",
                                       "method", "ratio", "stage", "loss"]
    assert set(frame.task) == {"digits"} and set(frame.seed) == {0}
    # 2 dense baselines + narrow dense and 2 methods at 2 ratios x 2 stages.
    assert len(frame) == 2 + 3 * 2 * 2
    dense = frame[frame.stage == "dense"].set_index("method")
    assert sorted(dense.index) == ["dense", "dense_30ep"]
    assert dense.loc["dense", "max_epochs"] == 1 and dense.loc["dense_30ep", "max_epochs"] == 2
    for method in ("ec", "magnitude", "narrow_dense"):
        rows = frame[frame.method == method]
        assert sorted(zip(rows.ratio, rows.stage)) == [
            (0.5, "finetuned"), (0.5, "pruned"), (0.9, "finetuned"), (0.9, "pruned")]
    pruned = frame[frame.method.isin(["ec", "magnitude"])]
    np.testing.assert_allclose(pruned.sparsity, pruned.ratio, atol=1e-3)
    assert (pruned[pruned.stage == "pruned"].finetune_epochs == 0).all()
    assert (pruned[pruned.stage == "finetuned"].finetune_epochs == 1).all()
    narrow = frame[frame.method == "narrow_dense"]
    # Matched weight count within a few percent of the pruned network's nonzero count.
    np.testing.assert_allclose(narrow.sparsity, narrow.ratio, atol=0.03)
    assert np.isfinite(frame.loss).all() and (frame.loss > 0).all()
    assert frame.accuracy.between(0, 1).all()


def test_tiny_run_draws_figures_and_tables(bench, tiny_run):
    png = tiny_run / "digits.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size < 200_000
    summary = (tiny_run / "summary.md").read_text()
    assert "### digits" in summary and "| ec vs magnitude |" in summary
    png.unlink()
    assert bench.main(["--plot-only", "--out-dir", str(tiny_run)]) == 0
    assert png.exists()


def test_narrow_widths_match_the_weight_count(bench):
    for hidden, n_in, n_out in [((32, 32), 64, 10), ((64, 32, 32, 16, 16), 68, 1)]:
        dense = bench.n_weights(n_in, hidden, n_out)
        for ratio in (0.1, 0.5, 0.9, 0.95):
            widths = bench.narrow_widths(n_in, hidden, n_out, (1 - ratio) * dense)
            assert len(widths) == len(hidden) and min(widths) >= 1
            got = bench.n_weights(n_in, widths, n_out)
            assert abs(got - (1 - ratio) * dense) <= 0.05 * (1 - ratio) * dense + n_in + n_out
    assert bench.narrow_widths(64, (32, 32), 10, bench.n_weights(64, (32, 32), 10)) == (32, 32)


def test_configurations(bench):
    full = bench.configuration("full")
    assert len(full) == 8  # 2 classification + 2 PDE networks x 3 noise levels
    assert {t["noise"] for t in full if t["kind"] == "regression"} == {0, 0.005, 0.01}
    for task in full:
        assert task["seeds"] == list(range(5)) and list(task["ratios"]) == list(bench.ALL_RATIOS)
        assert set(task["methods"]) == set(bench.METHODS) and task["nonlinear_seeds"] is None
    jobs = bench.jobs_for(bench.configuration("tiny")[0])
    assert len(jobs) == len(set(jobs)) == 14
    with pytest.raises(ValueError, match="mode"):
        bench.configuration("huge")
