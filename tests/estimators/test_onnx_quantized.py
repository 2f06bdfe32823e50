"""ONNX export of quantised estimators (``quantize_bits``): integer initializers, per-row
scales through ``DequantizeLinear``, and onnxruntime reproducing ``predict``.

Conventions and helpers as in ``test_onnx.py``: labels exactly, numbers to 1e-5.
"""

import functools

import numpy as np
import pytest

skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, numpy_helper  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from torch import nn  # noqa: E402

from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor  # noqa: E402

from sk_ecprune import onnx as sk_onnx  # noqa: E402, F401  (registers the converters)

from .test_onnx import (  # noqa: E402
    ACTIVATIONS,
    ATOL,
    TINY,
    _check_classifier_tensors,
    _convert,
    _run,
    _X,
    _y,
)


@functools.lru_cache(maxsize=None)
def _quantized(task, activation="prelu", granularity="weight", bits=4, pipeline=False):
    """A fitted, quantised estimator (cached: the tests only read it)."""
    cls = PrunedMLPRegressor if task in ("single", "multi") else PrunedMLPClassifier
    est = cls(
        activation=activation, granularity=granularity, prune_ratio=0.6,
        quantize_bits=bits, **TINY,
    )
    if pipeline:
        est = make_pipeline(StandardScaler(), est)
    return est.fit(_X(), _y(task))


def _session(onx, disable_quant_qdq):
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", disable_quant_qdq)
    return ort.InferenceSession(
        onx.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _codes_and_scales(onx):
    """{initializer name: array} of the codes and scales (int4 read back as int8)."""
    out = {}
    for t in onx.graph.initializer:
        if "_codes" in t.name or "_scale" in t.name:
            out[t.name] = (t.data_type, numpy_helper.to_array(t))
    return out


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("task", ["multiclass", "multi"])
def test_every_activation_round_trip(task, activation):
    est = _quantized(task, activation)
    X = _X()
    if task == "multiclass":
        out = _run(_convert(est, options={"zipmap": False}), X)
        _check_classifier_tensors(est, out, X)
    else:
        out = _run(_convert(est), X)["variable"]
        np.testing.assert_allclose(out, est.predict(X), rtol=0, atol=ATOL)


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
@pytest.mark.parametrize("task", ["binary", "single"])
def test_both_granularities_in_a_pipeline(task, granularity):
    pipe = _quantized(task, granularity=granularity, pipeline=True)
    X = _X()
    if task == "binary":
        out = _run(_convert(pipe, options={"zipmap": False}), X)
        _check_classifier_tensors(pipe, out, X)
    else:
        out = _run(_convert(pipe), X)["variable"]
        np.testing.assert_allclose(out.ravel(), pipe.predict(X), rtol=0, atol=ATOL)
    est = pipe[-1]
    if granularity == "neuron":  # compacted in fit: the grids describe the small layers
        widths = [layer.codes.shape[0] for layer in est.quantization_][:-1]
        assert tuple(widths) == est.hidden_layer_sizes_ != TINY["hidden_layer_sizes"]


@pytest.mark.parametrize(("bits", "opset", "dtype"), [
    (4, None, TensorProto.INT4),  # the default opset is above 21
    (4, 21, TensorProto.INT4),
    (4, 20, TensorProto.INT8),
    (3, 21, TensorProto.INT4),
    (5, 21, TensorProto.INT8),
    (8, 15, TensorProto.INT8),
])
def test_codes_are_int4_or_int8_and_rebuild_to_torch(bits, opset, dtype):
    reg = _quantized("multi", bits=bits)
    onx = _convert(reg, target_opset=opset)
    arrays = _codes_and_scales(onx)
    codes = [a for name, (_, a) in arrays.items() if "_codes" in name]
    scales = [a for name, (_, a) in arrays.items() if "_scale" in name]
    assert {t for name, (t, _) in arrays.items() if "_codes" in name} == {dtype}
    assert not [t.name for t in onx.graph.initializer if t.name.endswith("_weight")]
    qmax = 2 ** (bits - 1) - 1
    linears = [m for m in reg.to_torch() if isinstance(m, nn.Linear)]
    assert len(codes) == len(scales) == len(linears)
    for c, s, layer in zip(codes, scales, linears):
        c = c.astype(np.int64)
        assert np.abs(c).max() <= qmax
        rebuilt = c.astype(np.float32) * s.astype(np.float32)[:, None]
        np.testing.assert_array_equal(rebuilt, layer.weight.detach().numpy())
    X = _X()
    for disable in ("0", "1"):  # with and without onnxruntime's QDQ handling
        out = _session(onx, disable).run(None, {"X": X})[0]
        np.testing.assert_allclose(out, reg.predict(X), rtol=0, atol=ATOL)


def test_quantised_file_is_smaller_and_model_bytes_is_its_size():
    settings = dict(TINY, hidden_layer_sizes=(32, 32), prune_ratio=0.0)
    models = [
        PrunedMLPRegressor(quantize_bits=bits, **settings).fit(_X(), _y("multi"))
        for bits in (None, 8, 4)
    ]
    sizes = [len(_convert(m).SerializeToString()) for m in models]
    assert [m.model_bytes_ for m in models] == sizes
    # 1312 weights: int8 codes save 3 bytes each, int4 another half byte, less a float32
    # scale per row (67 rows) and the DequantizeLinear nodes
    assert sizes[0] - sizes[1] > 3 * 1312 - 4 * 67 - 500
    assert sizes[1] - sizes[2] > 1312 // 2 - 100


def test_weights_changed_after_fit_are_refused():
    import copy

    import torch

    reg = copy.deepcopy(_quantized("multi"))
    with torch.no_grad():
        reg.net_.module_.layers[0].weight.mul_(1.001)  # off the grid
    with pytest.raises(ValueError, match="no longer the integer grids"):
        _convert(reg)
