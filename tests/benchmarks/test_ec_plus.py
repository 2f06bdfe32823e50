"""benchmarks/ec_plus.py: the tiny configuration end to end."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pd = pytest.importorskip("pandas")



@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("ec_plus")


@pytest.fixture(scope="module")
def tiny_run(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    common = ["--tiny", "--n-jobs", "1", "--out-dir", str(out)]
    assert bench.main([*common, "--configs", "ec", "ec_iter5", "magnitude_gradual5"]) == 0
    # --append adds a configuration without repeating the dense or magnitude rows
    assert bench.main([*common, "--append", "--configs", "ec_gradual5", "ec"]) == 0
    return out


def test_tiny_run_measures_every_configuration_and_stage(tiny_run):
    frame = pd.read_csv(tiny_run / "results.csv")
    # dense + (magnitude, ec, ec_iter5) x 2 ratios x 2 stages + 2 gradual x 2 ratios
    assert len(frame) == 1 + 3 * 2 * 2 + 2 * 2
    assert not frame.duplicated(["config", "ratio", "seed", "stage"]).any()
    gradual = frame[frame.config.str.contains("gradual")]
    assert set(gradual.stage) == {"finetuned"}
    pruned = frame[frame.stage != "dense"]
    np.testing.assert_allclose(pruned.sparsity, pruned.ratio, atol=2e-3)
    assert (pruned.prune_epochs > 0).all() and np.isfinite(frame.loss).all()
    # Five scoring passes cost more than one: the cost column measures the schedule.
    cost = pruned.groupby("config").prune_time_s.median()
    assert cost["ec_iter5"] > cost["ec"]


def test_tiny_run_writes_targets_and_figure(bench, tiny_run):
    summary = (tiny_run / "summary.md").read_text()
    assert "Right after pruning" in summary and "| ec_iter5" in summary
    assert "After fine-tuning" in summary and "| magnitude_gradual5 |" in summary
    assert (tiny_run / "digits.png").read_bytes()[:4] == b"\x89PNG"


def test_cost_mode_measures_schedules_in_epochs(bench, tmp_path):
    assert bench.main(["--tiny", "--cost", "magnitude", "ec_iter5", "--out-dir",
                       str(tmp_path)]) == 0
    table = (tmp_path / "cost.md").read_text().splitlines()
    assert table[0] == "| task | magnitude | ec_iter5 |"
    magnitude, iterative = (float(c) for c in table[2].strip("| ").split(" | ")[1:])
    assert 0 < magnitude < iterative  # five EC scoring passes cost more than sorting |W|
