"""Round trips of the estimators through skl2onnx and onnxruntime.

Every test converts a fitted estimator (or a Pipeline ending in one) with
``skl2onnx.to_onnx``, runs the graph with onnxruntime and compares with the estimator's
``predict``/``predict_proba`` (labels exactly, numbers to 1e-5).
"""

import copy
import functools
import importlib.util
import sys

import numpy as np
import pytest

skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import torch  # noqa: E402
from onnx import numpy_helper  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from torch import nn  # noqa: E402

from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor  # noqa: E402

from sk_ecprune import onnx as sk_onnx  # noqa: E402

ACTIVATIONS = ["identity", "logistic", "tanh", "relu", "prelu", "gelu", "silu"]
ATOL = 1e-5
TINY = dict(hidden_layer_sizes=(8, 8), max_epochs=3, finetune_epochs=2, random_state=0,
            batch_size=32)
N_FEATURES = 6


# ------------------------------------------------------------------------- helpers


def _X(n=240):
    """Float32 inputs with features of unequal scale (so that the scaler matters)."""
    rs = np.random.RandomState(0)
    return (rs.randn(n, N_FEATURES) * np.arange(1, N_FEATURES + 1)).astype(np.float32)


def _y(task):
    """Targets of each task, all functions of ``_X()``."""
    X = _X()
    score = X[:, 0] - 0.5 * X[:, 1] + 0.2 * X[:, 2]
    three = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    if task == "binary":
        return (score > 0).astype(np.int64)
    if task == "multiclass":
        return three
    if task == "strings":
        return np.array(["cat", "dog", "emu"])[three]
    if task == "sparse_ints":  # non-contiguous integer labels
        return np.array([3, 7, 11])[three]
    if task == "single":
        return score
    if task == "multi":
        return np.column_stack([score, X[:, 3], np.sin(X[:, 4])])
    raise ValueError(task)


@functools.lru_cache(maxsize=None)
def _fitted(task, activation="prelu", pipeline=False):
    """A fitted estimator (cached: the tests only read it)."""
    cls = PrunedMLPRegressor if task in ("single", "multi") else PrunedMLPClassifier
    est = cls(activation=activation, **TINY)
    if pipeline:
        est = make_pipeline(StandardScaler(), est)
    return est.fit(_X(), _y(task))


def _convert(model, X=None, **kwargs):
    """``to_onnx`` on the first row, float32 unless ``X`` says otherwise."""
    X = _X()[:1] if X is None else X[:1]
    return skl2onnx.to_onnx(model, X, **kwargs)


def _run(onx, X):
    """Check the model, run it with onnxruntime; outputs by name."""
    onnx.checker.check_model(onx, full_check=True)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: X})))


def _check_classifier_tensors(model, out, X):
    """``label``/``probabilities`` (zipmap=False) equal predict/predict_proba."""
    assert list(out) == ["label", "probabilities"]
    np.testing.assert_array_equal(out["label"], model.predict(X))
    assert out["probabilities"].dtype == np.float32
    np.testing.assert_allclose(out["probabilities"], model.predict_proba(X), rtol=0, atol=ATOL)


def _check_zipmap(model, out, X):
    """``output_label``/``output_probability`` (zipmap=True): a list of dicts by class."""
    assert list(out) == ["output_label", "output_probability"]
    np.testing.assert_array_equal(out["output_label"], model.predict(X))
    classes = model.classes_
    assert [sorted(d) for d in out["output_probability"][:1]] == [sorted(classes.tolist())]
    proba = np.array([[d[c] for c in classes.tolist()] for d in out["output_probability"]])
    np.testing.assert_allclose(proba, model.predict_proba(X), rtol=0, atol=ATOL)


def _linears(module):
    return [m for m in module if isinstance(m, nn.Linear)]


# ---------------------------------------------------------------------- activations


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_classifier_every_activation(activation):
    clf = _fitted("multiclass", activation)
    X = _X()
    out = _run(_convert(clf, options={"zipmap": False}), X)
    _check_classifier_tensors(clf, out, X)
    assert out["label"].dtype == np.int64


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_regressor_every_activation(activation):
    reg = _fitted("multi", activation)
    X = _X()
    out = _run(_convert(reg), X)
    assert list(out) == ["variable"]
    assert out["variable"].shape == (len(X), 3) and out["variable"].dtype == np.float32
    np.testing.assert_allclose(out["variable"], reg.predict(X), rtol=0, atol=ATOL)


@pytest.mark.parametrize("opset", [15, 19])
def test_gelu_below_opset_20_uses_erf(opset):
    clf = _fitted("multiclass", "gelu")
    onx = _convert(clf, options={"zipmap": False}, target_opset=opset)
    ops = {n.op_type for n in onx.graph.node}
    assert "Gelu" not in ops and "Erf" in ops
    _check_classifier_tensors(clf, _run(onx, _X()), _X())


def test_gelu_operator_from_opset_20():
    onx = _convert(_fitted("multi", "gelu"), target_opset=20)
    assert "Gelu" in {n.op_type for n in onx.graph.node}


# ------------------------------------------------------------------- classifiers


def test_binary_zipmap_default():
    clf = _fitted("binary")
    assert len(clf.classes_) == 2
    _check_zipmap(clf, _run(_convert(clf), _X()), _X())


def test_binary_tensors_have_two_columns():
    clf = _fitted("binary")
    out = _run(_convert(clf, options={"zipmap": False}), _X())
    assert out["probabilities"].shape == (len(_X()), 2)
    _check_classifier_tensors(clf, out, _X())


@pytest.mark.parametrize("zipmap", [True, False])
def test_string_labels(zipmap):
    clf = _fitted("strings")
    X = _X()
    out = _run(_convert(clf, options={"zipmap": zipmap}), X)
    if zipmap:
        _check_zipmap(clf, out, X)
    else:
        _check_classifier_tensors(clf, out, X)
        assert out["label"].dtype == object and set(out["label"]) <= {"cat", "dog", "emu"}


@pytest.mark.parametrize("zipmap", [True, False])
def test_non_contiguous_integer_labels(zipmap):
    clf = _fitted("sparse_ints")
    X = _X()
    out = _run(_convert(clf, options={"zipmap": zipmap}), X)
    (_check_zipmap if zipmap else _check_classifier_tensors)(clf, out, X)
    assert set(out["output_label" if zipmap else "label"]) <= {3, 7, 11}


def test_zipmap_columns():
    clf = _fitted("strings")
    X = _X()
    out = _run(_convert(clf, options={"zipmap": "columns"}), X)
    assert list(out) == ["output_label", "scat", "sdog", "semu"]
    np.testing.assert_array_equal(out["output_label"], clf.predict(X))
    proba = np.column_stack([out["scat"], out["sdog"], out["semu"]])
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=0, atol=ATOL)


def test_nocl_returns_class_indices():
    clf = _fitted("strings")
    X = _X()
    onx = _convert(clf, options={"zipmap": False, "nocl": True})
    out = _run(onx, X)
    expected = np.searchsorted(clf.classes_, clf.predict(X))
    np.testing.assert_array_equal(out["label"], expected)
    # No class name is stored in the graph.
    assert not any(t.data_type == onnx.TensorProto.STRING for t in onx.graph.initializer)


def test_output_class_labels():
    clf = _fitted("sparse_ints")
    out = _run(_convert(clf, options={"zipmap": False, "output_class_labels": True}), _X())
    np.testing.assert_array_equal(out["class_labels"], clf.classes_)


# ------------------------------------------------------------------- regressors


def test_single_output_regressor_is_n_by_1():
    reg = _fitted("single")
    X = _X()
    assert reg.predict(X).shape == (len(X),)
    out = _run(_convert(reg), X)["variable"]
    assert out.shape == (len(X), 1)  # skl2onnx's convention for regressors
    np.testing.assert_allclose(out.ravel(), reg.predict(X), rtol=0, atol=ATOL)


def test_double_input_gives_double_outputs():
    X = _X().astype(np.float64)
    reg = _fitted("multi")
    out = _run(_convert(reg, X), X)["variable"]
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, reg.predict(X), rtol=0, atol=ATOL)
    clf = _fitted("multiclass")
    out = _run(_convert(clf, X, options={"zipmap": False}), X)
    assert out["probabilities"].dtype == np.float64
    np.testing.assert_array_equal(out["label"], clf.predict(X))
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X), rtol=0, atol=ATOL)


def test_integer_input_is_cast_to_float():
    X = np.round(_X()).astype(np.int64)
    reg = _fitted("multi")
    out = _run(_convert(reg, X), X)["variable"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, reg.predict(X), rtol=0, atol=ATOL)


# ---------------------------------------------------------------------- pipelines


@pytest.mark.parametrize("zipmap", [True, False])
def test_pipeline_classifier(zipmap):
    pipe = _fitted("strings", pipeline=True)
    X = _X()
    # Options given for the pipeline reach its classifier, as for sklearn's classifiers.
    out = _run(_convert(pipe, options={id(pipe): {"zipmap": zipmap}}), X)
    (_check_zipmap if zipmap else _check_classifier_tensors)(pipe, out, X)


def test_pipeline_classifier_options_by_class():
    pipe = _fitted("multiclass", pipeline=True)
    out = _run(_convert(pipe, options={PrunedMLPClassifier: {"zipmap": False}}), _X())
    _check_classifier_tensors(pipe, out, _X())


@pytest.mark.parametrize("task", ["single", "multi"])
def test_pipeline_regressor(task):
    pipe = _fitted(task, pipeline=True)
    X = _X()
    out = _run(_convert(pipe), X)["variable"]
    expected = pipe.predict(X)
    np.testing.assert_allclose(out, expected.reshape(len(X), -1), rtol=0, atol=ATOL)


def test_saved_file_round_trip(tmp_path):
    pipe = _fitted("multiclass", pipeline=True)
    path = tmp_path / "model.onnx"
    path.write_bytes(_convert(pipe, options={id(pipe): {"zipmap": False}}).SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"X": _X()})
    np.testing.assert_array_equal(label, pipe.predict(_X()))
    np.testing.assert_allclose(proba, pipe.predict_proba(_X()), rtol=0, atol=ATOL)


# ------------------------------------------------------------------- initializers


@pytest.mark.parametrize("task", ["multiclass", "multi"])
def test_initializers_are_the_to_torch_matrices(task):
    est = _fitted(task)
    onx = _convert(est, options={"zipmap": False} if task == "multiclass" else None)
    inits = {t.name: numpy_helper.to_array(t) for t in onx.graph.initializer}
    linears = _linears(est.to_torch())
    weights = {k: v for k, v in inits.items() if k.endswith("_weight")}
    assert len(weights) == len(linears)
    for array, layer in zip(weights.values(), linears):
        assert array.shape == tuple(layer.weight.shape)  # (out_features, in_features)
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, layer.weight.detach().numpy())


def test_pruned_zeros_are_kept_in_dense_matrices():
    # A weight-pruned model: to_torch() drops only the units pruning disconnected; the
    # zeros left inside its matrices are stored as zeros in the (dense) initializers.
    est = _fitted("multi")
    weights = [numpy_helper.to_array(t) for t in _convert(est).graph.initializer
               if t.name.endswith("_weight")]
    expected = [m.weight.detach().numpy() for m in _linears(est.to_torch())]
    assert [w.shape for w in weights] == [w.shape for w in expected]
    n_zero = sum(int((w == 0).sum()) for w in weights)
    assert n_zero == sum(int((w == 0).sum()) for w in expected) > 0


def _custom_network():
    """A compacted network with every activation form the converter accepts."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(N_FEATURES, 5),
        nn.PReLU(num_parameters=5, init=0.1),
        nn.Linear(5, 4, bias=False),
        nn.GELU(approximate="tanh"),
        nn.Linear(4, 3),
        nn.Identity(),
        nn.SiLU(),
        nn.Linear(3, 3),
        nn.GELU(),
        nn.Linear(3, 3),
    ).eval()


@pytest.mark.parametrize("opset", [None, 15])
def test_compacted_network_and_activation_variants(opset):
    """The graph is whatever to_torch() returns: small matrices, per-unit PReLU, ..."""
    reg = copy.deepcopy(_fitted("multi"))
    network = _custom_network()
    with torch.no_grad():
        network[1].weight.copy_(torch.linspace(-0.5, 0.5, 5))
    reg.to_torch = lambda: copy.deepcopy(network)  # instance attribute: only this one
    X = _X()
    onx = _convert(reg, target_opset=opset)
    shapes = [tuple(numpy_helper.to_array(t).shape) for t in onx.graph.initializer
              if t.name.endswith("_weight")]
    assert shapes == [(5, N_FEATURES), (4, 5), (3, 4), (3, 3), (3, 3)]
    with torch.no_grad():
        expected = network(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(_run(onx, X)["variable"], expected, rtol=0, atol=ATOL)


# -------------------------------------------------------------------------- errors


def test_unsupported_module_is_named():
    reg = copy.deepcopy(_fitted("multi"))
    reg.to_torch = lambda: nn.Sequential(nn.Linear(N_FEATURES, 3), nn.Softplus(), nn.Linear(3, 3))
    with pytest.raises(TypeError, match="Softplus"):
        _convert(reg)


def test_wrong_number_of_features():
    with pytest.raises(ValueError, match="fitted on 6"):
        _convert(_fitted("multi"), np.zeros((1, 4), dtype=np.float32))


def test_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # as if not installed
    spec = importlib.util.spec_from_file_location("_sk_onnx_without_skl2onnx", sk_onnx.__file__)
    with pytest.raises(ImportError, match=r"pip install sk_ecprune\[onnx\]"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
