"""benchmarks/bench_quantization.py: the tiny configuration end to end."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pd = pytest.importorskip("pandas")
pytest.importorskip("skl2onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tiny_run(load_script, tmp_path_factory):
    bench = load_script("bench_quantization")
    out = tmp_path_factory.mktemp("tiny")
    assert bench.main(["--tiny", "--out-dir", str(out)]) == 0
    return bench, out


def test_every_network_quantiser_and_width_is_measured(tiny_run):
    bench, out = tiny_run
    frame = pd.read_csv(out / "results.csv")
    sweep = frame[frame.network.isin(list(bench.NETWORKS))]
    quantized = sweep[sweep.method != "float"]
    expected = len(bench.NETWORKS) * len(bench.QUANTIZERS) * 2  # tiny: 8 and 2 bits
    assert len(quantized) == expected and not quantized.duplicated(
        ["network", "method", "bits"]).any()
    assert set(sweep[sweep.method == "float"].network) == set(bench.NETWORKS)
    for network, rows in sweep.groupby("network"):
        flt = rows[rows.method == "float"].iloc[0]
        q = rows[rows.method != "float"]
        assert (q.model_bytes < flt.model_bytes).all()  # integer codes instead of float32
        assert q[q.bits == 2].model_bytes.max() < q[q.bits == 8].model_bytes.min()  # int4
        assert (q.quantize_epochs > 0).all() and np.isfinite(q.loss).all()
        assert (q.distortion >= 0).all()
    # neuron pruning compacts: a smaller file than the weight-pruned network's zeros
    floats = sweep[sweep.method == "float"].set_index("network").model_bytes
    assert floats["neuron"] < floats["weight"] <= floats["dense"]


def test_headline_rows_through_fit_match_the_sweep(tiny_run):
    _, out = tiny_run
    frame = pd.read_csv(out / "results.csv")
    for network in ("dense", "neuron"):
        fit = frame[frame.network == f"estimator_{network}"]
        assert len(fit) == 1 and fit.iloc[0].bits == 4
        # the same network as the sweep's float one, quantised by fit: tiny distortion
        assert fit.iloc[0].distortion < 0.05


def test_speed_cost_summary_and_figure(tiny_run):
    _, out = tiny_run
    speed = pd.read_csv(out / "speed.csv")
    assert set(speed.variant) == {"float", "int8", "int4", "quantize_dynamic"}
    assert (speed[speed.variant.str.startswith("int")].groupby(
        ["network", "variant"]).disable_quant_qdq.nunique() == 2).all()
    assert (speed.batch_ms > 0).all() and (speed.row_us > 0).all()
    cost = pd.read_csv(out / "cost.csv")
    assert list(cost.method) == ["rtn", "ec", "gptq", "ec_obs"] and (cost.epochs > 0).all()
    summary = (out / "summary.md").read_text()
    assert "## Targets of the issue" in summary and "quantize_dynamic" in summary
    assert (out / "tradeoff.png").read_bytes()[:4] == b"\x89PNG"
