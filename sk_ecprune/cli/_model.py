"""The model the command line fits, and the files it writes.

Classification: ``Pipeline([("scale", StandardScaler()), ("mlp", PrunedMLPClassifier)])``.
Regression: the same pipeline with a :class:`PrunedMLPRegressor`, inside a
:class:`~sklearn.compose.TransformedTargetRegressor` that standardises the target too (the
network trains on values of scale 1, predictions come back in the target's units).
"""

import pickle
from pathlib import Path

import numpy as np
from sklearn.compose import TransformedTargetRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..estimators import PrunedMLPClassifier, PrunedMLPRegressor

__all__ = ["MODEL_SUFFIXES", "OUT_NEEDS", "make_model", "mlp_of", "mlp_prefix", "write_model"]

MODEL_SUFFIXES = (".joblib", ".skops", ".onnx")
#: Packages each output format needs, and how to install them.
OUT_NEEDS = {
    ".onnx": (("onnx", "skl2onnx"), "pip install 'sk_ecprune[onnx]'"),
    ".skops": (("skops",), "pip install 'sk_ecprune[persist]'"),
}


def make_model(task, params):
    """The scaled pipeline of ``task`` with the estimator parameters ``params``."""
    if task == "classification":
        return Pipeline([("scale", StandardScaler()), ("mlp", PrunedMLPClassifier(**params))])
    pipe = Pipeline([("scale", StandardScaler()), ("mlp", PrunedMLPRegressor(**params))])
    return TransformedTargetRegressor(regressor=pipe, transformer=StandardScaler())


def mlp_prefix(model):
    """The ``set_params`` prefix of the pruned MLP inside ``model``."""
    return "regressor__mlp__" if isinstance(model, TransformedTargetRegressor) else "mlp__"


def mlp_of(fitted):
    """The fitted pruned MLP inside a fitted model."""
    pipe = fitted.regressor_ if isinstance(fitted, TransformedTargetRegressor) else fitted
    return pipe.named_steps["mlp"]


def write_model(model, path, X_sample):
    """Write the fitted ``model`` to ``path`` in the format its suffix names; return the
    size of the file in bytes. A failed write leaves no file behind."""
    path = Path(path)
    writers = {".joblib": _write_joblib, ".skops": _write_skops, ".onnx": _write_onnx}
    try:
        writers[path.suffix.lower()](model, path, X_sample)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path.stat().st_size


def pickled_size(model):
    """Bytes of the pickled model: its size when no file is written."""
    return len(pickle.dumps(model))


def _write_joblib(model, path, X_sample):
    import joblib

    joblib.dump(model, path)


def _write_skops(model, path, X_sample):
    import skops.io

    skops.io.dump(model, path)


def _write_onnx(model, path, X_sample):
    import sk_ecprune.onnx  # noqa: F401  (registers the converters with skl2onnx)
    from skl2onnx import to_onnx

    sample = np.asarray(X_sample[:1], dtype=np.float32)
    if isinstance(model, TransformedTargetRegressor):
        onx = to_onnx(model.regressor_, sample)
        _append_inverse_scaling(onx, model.transformer_)
    else:
        options = {id(model.named_steps["mlp"]): {"zipmap": False}}
        onx = to_onnx(model, sample, options=options)
    path.write_bytes(onx.SerializeToString())


def _append_inverse_scaling(onx, scaler):
    """Turn the graph's output (the standardised target) into the target's units:
    ``variable = scaled * scale_ + mean_``, as ``TransformedTargetRegressor.predict`` does
    (skl2onnx has no converter of TransformedTargetRegressor)."""
    from onnx import helper, numpy_helper

    graph = onx.graph
    output = graph.output[0]
    scaled = output.name + "_standardised"
    for node in graph.node:
        node.output[:] = [scaled if name == output.name else name for name in node.output]
    scale = np.asarray(scaler.scale_, dtype=np.float32).reshape(1, -1)
    mean = np.asarray(scaler.mean_, dtype=np.float32).reshape(1, -1)
    graph.initializer.extend([numpy_helper.from_array(scale, "target_scale"),
                              numpy_helper.from_array(mean, "target_mean")])
    graph.node.extend([
        helper.make_node("Mul", [scaled, "target_scale"], [scaled + "_times_scale"]),
        helper.make_node("Add", [scaled + "_times_scale", "target_mean"], [output.name]),
    ])
