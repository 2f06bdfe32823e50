"""benchmarks/bench_structured.py: the tiny configuration end to end."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pd = pytest.importorskip("pandas")
pytest.importorskip("torch_pruning", reason="needs the bench extra (Torch-Pruning)")


@pytest.fixture(scope="module")
def tiny_run(load_script, tmp_path_factory):
    bench = load_script("bench_structured")
    out = tmp_path_factory.mktemp("tiny")
    assert bench.main(["--tiny", "--n-jobs", "1", "--out-dir", str(out)]) == 0
    return bench, out


def test_every_configuration_is_measured_at_or_below_its_ratio(tiny_run):
    bench, out = tiny_run
    frame = pd.read_csv(out / "results.csv")
    assert set(frame.config) == {"dense", *bench.CONFIGS}
    pruned = frame[frame.stage != "dense"]
    assert not pruned.duplicated(["config", "ratio", "seed", "stage"]).any()
    structured = pruned[pruned.config.str.startswith(("neuron", "tp"))]
    # whole units: at or below the target, within one unit's weights (64 + 32 + 32 + 10)
    assert (structured.sparsity <= structured.ratio + 1e-9).all()
    assert (structured.sparsity > structured.ratio - 0.05).all()
    narrow = pruned[pruned.config == "narrow_dense"]
    np.testing.assert_allclose(narrow.sparsity, narrow.ratio, atol=0.05)
    compacted = pruned[pruned.config.str.startswith("neuron")]
    dense_widths = frame[frame.stage == "dense"].hidden_layer_sizes.iloc[0]
    assert (compacted.hidden_layer_sizes != dense_widths).all()  # really smaller
    assert np.isfinite(frame.loss).all() and np.isfinite(frame.train_loss).all()


def test_the_summary_compares_against_torch_pruning_and_the_narrow_network(tiny_run):
    _, out = tiny_run
    summary = (out / "summary.md").read_text()
    assert "below tp_magnitude's" in summary and "below narrow_dense's" in summary
    assert (out / "digits.png").read_bytes()[:4] == b"\x89PNG"


def test_the_tradeoff_figure_times_the_networks_each_configuration_leaves(tiny_run, load_script):
    _, out = tiny_run
    assert load_script("plot_tradeoff").main(["--out-dir", str(out), "--repeats", "1"]) == 0
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "tradeoff.md").read_text()
    assert "| weight_magnitude | 0.8 | 64-32-32-10 |" in table  # zeros keep the dense shape
    neuron = [line for line in table.splitlines() if "| neuron_magnitude | 0.8 |" in line]
    assert neuron and "| 64-32-32-10 |" not in neuron[0]  # compacted: smaller widths
