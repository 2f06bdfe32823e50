"""ONNX export of the fitted estimators through skl2onnx.

Importing this module registers a shape calculator and a converter with skl2onnx for
:class:`~sk_ecprune.estimators.PrunedMLPClassifier` and
:class:`~sk_ecprune.estimators.PrunedMLPRegressor`, so that ``skl2onnx.to_onnx`` converts
a fitted estimator, or a :class:`~sklearn.pipeline.Pipeline` ending in one, like any
scikit-learn model::

    import sk_ecprune.onnx  # noqa: F401  (registers the converters)
    from skl2onnx import to_onnx

    onx = to_onnx(pipe, X[:1].astype(np.float32))

The converters read a fitted estimator through ``est.to_torch()`` (plus
``classes_`` for the classifier, ``n_outputs_`` for the regressor and, for a quantised
model, the integer grids of its layers): a CPU float32 ``nn.Sequential`` of
``nn.Linear`` layers and elementwise activations. Every ``nn.Linear`` becomes one
``Gemm`` node whose weight initializer is the layer's own ``(out_features,
in_features)`` matrix (``transB=1``), so the file holds exactly the matrices of
``to_torch()``: a compacted network gives small initializers, a weight-pruned one keeps
its zeros inside dense matrices.

A quantised model (``quantize_bits`` set) stores each weight matrix as its integer
codes with one float32 scale per output row, and a ``DequantizeLinear`` node (per-axis,
``axis=0``) rebuilds the float matrix ``codes * scale`` in front of the same ``Gemm``:
the rebuilt matrix is ``to_torch()``'s, bit for bit. The codes are int4 (two per byte)
when ``quantize_bits <= 4`` and the target opset is at least :data:`INT4_OPSET`, int8
otherwise. onnxruntime keeps ``DequantizeLinear`` nodes in the graph, and runs them on
every call, unless the session sets ``session.disable_quant_qdq`` to ``"1"``, in which
case it folds them into float matrices when the session loads::

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    session = onnxruntime.InferenceSession(onx.SerializeToString(), options)

Conventions, as skl2onnx's converters of scikit-learn's own models:

- Classifier: outputs ``label`` (int64 for integer, boolean or integral float labels,
  string for string labels) and ``probabilities`` (softmax of the logits, shape
  ``(N, n_classes)``, two columns for a binary problem). Options ``zipmap`` (True, the
  default: ``output_label`` and ``output_probability``, a list of dicts; False: plain
  tensors; ``"columns"``: one output per class), ``nocl`` (labels are class indices, no
  class names stored) and ``output_class_labels``.
- Regressor: one output ``variable`` of shape ``(N, n_outputs)``, which is ``(N, 1)``
  for a single target even when ``predict`` returns ``(N,)`` (``y`` 1-D at fit time):
  ravel it, as for scikit-learn's regressors converted by skl2onnx.
- The network is evaluated in float32 whatever the input type, as ``predict`` does; a
  double input gives double outputs (cast at the end).
- ``nn.GELU`` is the ``Gelu`` operator when the target opset is at least 20, otherwise
  its formula with ``Erf`` (or ``Tanh`` for ``approximate="tanh"``); ``nn.SiLU`` is
  ``x * Sigmoid(x)`` at every opset.
"""

try:
    from onnx import TensorProto, numpy_helper
    from skl2onnx import update_registered_converter
    from skl2onnx._parse import _parse_sklearn_classifier
    from skl2onnx.common.data_types import (
        DoubleTensorType,
        FloatTensorType,
        Int64TensorType,
    )
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
    )
    from skl2onnx.common.utils import (
        check_input_and_output_numbers,
        check_input_and_output_types,
    )
except ImportError as exc:  # the converters are an optional feature of the package
    raise ImportError(
        "sk_ecprune.onnx needs skl2onnx and onnx (and onnxruntime to run the exported "
        "models); install them with: pip install sk_ecprune[onnx]"
    ) from exc

import numpy as np
from sklearn.utils.validation import check_is_fitted
from torch import nn

__all__ = [
    "CLASSIFIER_ALIAS",
    "GELU_OPSET",
    "INT4_OPSET",
    "REGRESSOR_ALIAS",
    "register_converters",
]

#: skl2onnx alias (operator type) of :class:`~sk_ecprune.estimators.PrunedMLPClassifier`.
CLASSIFIER_ALIAS = "SkEcPrunePrunedMLPClassifier"
#: skl2onnx alias (operator type) of :class:`~sk_ecprune.estimators.PrunedMLPRegressor`.
REGRESSOR_ALIAS = "SkEcPrunePrunedMLPRegressor"
#: First opset of the ONNX ``Gelu`` operator; below it GELU is written with ``Erf``.
GELU_OPSET = 20
#: First opset whose ``DequantizeLinear`` reads int4 codes; below it they are int8.
INT4_OPSET = 21
#: First opset whose ``DequantizeLinear`` takes one scale per row (``axis``).
_PER_AXIS_OPSET = 13

#: Options of the classifier converter, as skl2onnx's classifiers declare them.
_CLASSIFIER_OPTIONS = {
    "zipmap": [True, False, "columns"],
    "nocl": [False, True],
    "output_class_labels": [False, True],
}

#: torch activation -> ONNX operator of one input, same name and semantics.
_PLAIN_ACTIVATIONS = {nn.Sigmoid: "Sigmoid", nn.Tanh: "Tanh", nn.ReLU: "Relu"}


# --------------------------------------------------------------------------- shapes


def _check_operator_input(operator):
    """Check the single tensor input of a converted estimator, return its ONNX dims."""
    check_input_and_output_numbers(
        operator, input_count_range=1, output_count_range=[1, 2]
    )
    check_input_and_output_types(
        operator,
        good_input_types=[FloatTensorType, DoubleTensorType, Int64TensorType],
    )
    return operator.inputs[0].get_first_dimension()


def _output_tensor_type(operator):
    """Double outputs for a double input, float otherwise (skl2onnx's rule)."""
    if isinstance(operator.inputs[0].type, DoubleTensorType):
        return DoubleTensorType
    return FloatTensorType


def _classifier_shapes(operator):
    """Shape calculator of :class:`PrunedMLPClassifier`.

    Label type and shape come from skl2onnx's linear-classifier calculator (it honours
    ``nocl`` and string labels); the probabilities are ``(N, n_classes)`` in the
    output tensor type.
    """
    check_is_fitted(operator.raw_operator)
    _check_operator_input(operator)
    calculate_linear_classifier_output_shapes(operator)
    n_rows = operator.inputs[0].get_first_dimension()
    n_classes = len(operator.raw_operator.classes_)
    operator.outputs[1].type = _output_tensor_type(operator)([n_rows, n_classes])


def _regressor_shapes(operator):
    """Shape calculator of :class:`PrunedMLPRegressor`: ``(N, n_outputs_)``.

    Always 2-D, as skl2onnx's regressors: a single target is ``(N, 1)``.
    """
    check_is_fitted(operator.raw_operator)
    n_rows = _check_operator_input(operator)
    n_outputs = int(operator.raw_operator.n_outputs_)
    operator.outputs[0].type = _output_tensor_type(operator)([n_rows, n_outputs])


# ------------------------------------------------------------------------- network


def _add_array(scope, container, stem, array):
    """Add ``array`` (numpy) as an initializer under a fresh name; return the name.

    ``from_array`` stores the bytes as they are (``raw_data``), so the initializer is
    the torch matrix bit for bit, in its own shape and dtype.
    """
    name = scope.get_unique_variable_name(stem)
    container.add_initializer(name, None, array.shape, numpy_helper.from_array(array))
    return name


def _param(tensor):
    """A torch parameter as a float32 numpy array (no copy when already float32 CPU)."""
    return tensor.detach().cpu().numpy().astype(np.float32, copy=False)


def _add_node(scope, container, op_type, inputs, stem, **attrs):
    """Add one node of the main domain with a fresh output; return the output name."""
    out = scope.get_unique_variable_name(stem)
    container.add_node(
        op_type, inputs, out, name=scope.get_unique_operator_name(op_type), **attrs
    )
    return out


def _int4_tensor(codes):
    """int4 codes (``-8..7``) as an ONNX tensor: two per byte, the first in the low nibble.

    ONNX's packing of 4-bit types; an odd count ends with a zero nibble.
    """
    nibbles = codes.ravel().astype(np.int16) & 0xF
    if len(nibbles) % 2:
        nibbles = np.append(nibbles, 0)
    tensor = TensorProto()
    tensor.data_type = TensorProto.INT4
    tensor.dims.extend(codes.shape)
    tensor.raw_data = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).tobytes()
    return tensor


def _emit_dequantized_weight(scope, container, grid, index):
    """The float weight matrix ``codes * scale`` of a quantised layer, as a
    ``DequantizeLinear`` of its integer codes with one scale per row; return its name."""
    codes, scales, bits = grid
    if bits <= 4 and container.target_opset >= INT4_OPSET:
        tensor, version = _int4_tensor(codes), INT4_OPSET
    else:
        tensor, version = numpy_helper.from_array(codes.astype(np.int8)), _PER_AXIS_OPSET
    if container.target_opset < _PER_AXIS_OPSET:
        raise ValueError(
            f"A quantised model needs target_opset >= {_PER_AXIS_OPSET} (per-row scales "
            f"of DequantizeLinear); got {container.target_opset}."
        )
    codes_name = scope.get_unique_variable_name(f"linear{index}_codes")
    container.add_initializer(codes_name, tensor.data_type, codes.shape, tensor)
    scale_name = _add_array(
        scope, container, f"linear{index}_scale", np.asarray(scales, dtype=np.float32)
    )
    return _add_node(
        scope, container, "DequantizeLinear", [codes_name, scale_name],
        f"linear{index}_weight", axis=0, op_version=version,
    )


def _emit_linear(scope, container, layer, x, index, grid=None):
    """``x @ W.T + b`` as one ``Gemm`` with ``W`` stored as torch holds it, or, for a
    quantised layer (``grid`` = codes, scales, bits), rebuilt from its integer codes."""
    if grid is None:
        weight = _add_array(scope, container, f"linear{index}_weight", _param(layer.weight))
    else:
        weight = _emit_dequantized_weight(scope, container, grid, index)
    inputs = [x, weight]
    if layer.bias is not None:
        inputs.append(_add_array(scope, container, f"linear{index}_bias", _param(layer.bias)))
    return _add_node(scope, container, "Gemm", inputs, f"linear{index}", transB=1)


def _emit_prelu(scope, container, act, x, index):
    """``PRelu`` with the slopes as a 1-D initializer.

    A slope vector of length 1 or of the layer width broadcasts over ``(N, width)``
    (ONNX's unidirectional broadcasting), which is torch's ``num_parameters`` rule.
    """
    slope = _add_array(scope, container, f"prelu{index}_slope", _param(act.weight))
    return _add_node(scope, container, "PRelu", [x, slope], f"prelu{index}")


def _scalar(scope, container, stem, value):
    """A float32 scalar initializer (broadcasts against any tensor)."""
    return _add_array(scope, container, stem, np.array(value, dtype=np.float32))


def _emit_gelu_formula(scope, container, x, approximate, index):
    """GELU for opsets without ``Gelu``: ``0.5 * x * (1 + inner)``.

    ``inner`` is ``erf(x / sqrt(2))`` for the exact form and
    ``tanh(sqrt(2 / pi) * (x + 0.044715 x^3))`` for ``approximate="tanh"``, torch's two
    definitions.
    """
    stem = f"gelu{index}"

    def node(op_type, *inputs):
        return _add_node(scope, container, op_type, list(inputs), stem)

    def const(value):
        return _scalar(scope, container, stem, value)

    if approximate == "tanh":
        cube = node("Mul", node("Mul", x, x), x)
        arg = node("Add", x, node("Mul", cube, const(0.044715)))
        inner = node("Tanh", node("Mul", arg, const(np.sqrt(2.0 / np.pi))))
    else:
        inner = node("Erf", node("Mul", x, const(np.sqrt(0.5))))
    return node("Mul", node("Mul", x, const(0.5)), node("Add", inner, const(1.0)))


def _emit_gelu(scope, container, act, x, index):
    """``nn.GELU`` as the ``Gelu`` operator where the opset has it, else its formula."""
    if act.approximate not in ("none", "tanh"):
        raise ValueError(f"Unknown GELU approximation {act.approximate!r}.")
    if container.target_opset >= GELU_OPSET:
        return _add_node(
            scope, container, "Gelu", [x], f"gelu{index}",
            approximate=act.approximate, op_version=GELU_OPSET,
        )
    return _emit_gelu_formula(scope, container, x, act.approximate, index)


def _emit_silu(scope, container, act, x, index):
    """``x * sigmoid(x)``: ONNX has no SiLU operator in the opsets onnxruntime runs."""
    sig = _add_node(scope, container, "Sigmoid", [x], f"silu{index}")
    return _add_node(scope, container, "Mul", [x, sig], f"silu{index}")


#: torch activation -> function adding its nodes (activations with parameters or no
#: one-operator equivalent at every opset).
_ACTIVATION_EMITTERS = {nn.PReLU: _emit_prelu, nn.GELU: _emit_gelu, nn.SiLU: _emit_silu}


def _emit_module(scope, container, module, x, index, grid=None):
    """Append the nodes of one module of the ``Sequential``; return its output name."""
    if isinstance(module, nn.Linear):
        return _emit_linear(scope, container, module, x, index, grid)
    if isinstance(module, (nn.Identity, nn.Dropout)):
        return x  # nothing to compute at inference (dropout is the identity in eval mode)
    kind = type(module)
    if kind in _PLAIN_ACTIVATIONS:
        op = _PLAIN_ACTIVATIONS[kind]
        return _add_node(scope, container, op, [x], f"{op.lower()}{index}")
    if kind in _ACTIVATION_EMITTERS:
        return _ACTIVATION_EMITTERS[kind](scope, container, module, x, index)
    if kind is nn.LeakyReLU:
        return _add_node(scope, container, "LeakyRelu", [x], f"leakyrelu{index}",
                         alpha=float(module.negative_slope))
    if kind is nn.ELU:
        return _add_node(scope, container, "Elu", [x], f"elu{index}", alpha=float(module.alpha))
    raise TypeError(
        f"Cannot convert module {index} of to_torch(), {module!r}, to ONNX: expected "
        "nn.Linear, nn.Identity, nn.Dropout, nn.Sigmoid, nn.Tanh, nn.ReLU, nn.LeakyReLU, "
        "nn.ELU, nn.PReLU, nn.GELU or nn.SiLU."
    )


def _network_module(estimator):
    """``estimator.to_torch()``, checked to be an ``nn.Sequential`` holding a Linear."""
    module = estimator.to_torch()
    if not isinstance(module, nn.Sequential) or not any(
        isinstance(m, nn.Linear) for m in module
    ):
        raise TypeError(
            f"{type(estimator).__name__}.to_torch() must return an nn.Sequential of "
            f"nn.Linear layers and activations; got {type(module).__name__}."
        )
    return module


def _check_n_features(operator, module):
    """Fail at conversion, not in onnxruntime, when the input width is wrong."""
    n_in = next(m for m in module if isinstance(m, nn.Linear)).in_features
    shape = operator.inputs[0].type.shape
    if len(shape) == 2 and isinstance(shape[1], (int, np.integer)) and shape[1] != n_in:
        raise ValueError(
            f"The ONNX input has {shape[1]} features but the "
            f"{type(operator.raw_operator).__name__} was fitted on {n_in}."
        )


def _emit_network(scope, operator, container):
    """The whole ``to_torch()`` network on the operator's input, in float32.

    Returns the name of the float32 ``(N, n_outputs)`` output: logits for the
    classifier, predictions for the regressor.
    """
    module = _network_module(operator.raw_operator)
    _check_n_features(operator, module)
    x = operator.inputs[0].full_name
    if not isinstance(operator.inputs[0].type, FloatTensorType):
        # predict() validates X as float32 before the network sees it: do the same.
        x = _add_node(scope, container, "Cast", [x], "input_float", to=TensorProto.FLOAT)
    grids = iter(_layer_grids(operator.raw_operator, module))
    for index, child in enumerate(module):
        grid = next(grids) if isinstance(child, nn.Linear) else None
        x = _emit_module(scope, container, child, x, index, grid)
    return x


def _layer_grids(estimator, module):
    """For each ``nn.Linear`` of ``module`` (``to_torch()``), its integer grid
    ``(codes, scales, bits)`` when the estimator is quantised, else None."""
    n_linear = sum(isinstance(m, nn.Linear) for m in module)
    grids = getattr(estimator, "_export_grids", None)
    grids = grids(module) if grids is not None else None
    return [None] * n_linear if grids is None else grids


def _emit_output(scope, container, operator, name, output):
    """Write the float32 tensor ``name`` to ``output``, cast to double for a double input."""
    if _output_tensor_type(operator) is DoubleTensorType:
        op_type, attrs = "Cast", {"to": TensorProto.DOUBLE}
    else:
        op_type, attrs = "Identity", {}
    container.add_node(
        op_type, [name], output.full_name,
        name=scope.get_unique_operator_name(op_type), **attrs,
    )


# ---------------------------------------------------------------------- converters


def _class_labels(scope, estimator):
    """The labels the graph returns, as an array ready for an initializer.

    Class indices with ``nocl``; otherwise ``classes_`` as int64 (integer, boolean or
    integral float labels, skl2onnx's rule) or as UTF-8 bytes (string labels).
    """
    classes = np.asarray(estimator.classes_)
    if scope.get_options(estimator, dict(nocl=False))["nocl"]:
        return np.arange(len(classes), dtype=np.int64)
    if classes.dtype == np.bool_ or np.issubdtype(classes.dtype, np.integer):
        return classes.astype(np.int64)
    if np.issubdtype(classes.dtype, np.floating):
        as_int = classes.astype(np.int64)
        if not np.array_equal(as_int, classes):
            raise ValueError(
                "ONNX labels are integers or strings; the classifier has non-integral "
                f"float classes {classes.tolist()}."
            )
        return as_int
    return np.array([str(c).encode("utf-8") for c in classes], dtype=object)


def _add_labels(scope, container, labels):
    """Add the class labels as an initializer (string tensors need ``make_tensor``)."""
    if labels.dtype == object:
        name = scope.get_unique_variable_name("classes")
        container.add_initializer(name, TensorProto.STRING, labels.shape, labels.tolist())
        return name
    return _add_array(scope, container, "classes", labels)


def convert_classifier(scope, operator, container):
    """skl2onnx converter of :class:`~sk_ecprune.estimators.PrunedMLPClassifier`.

    ``probabilities = Softmax(logits)`` and
    ``label = Gather(classes, ArgMax(logits))``, as ``predict`` takes the argmax of the
    logits (first index on ties, like ``numpy.argmax``).

    Parameters
    ----------
    scope : skl2onnx.common._topology.Scope
        Naming scope of the conversion.
    operator : skl2onnx.common._topology.Operator
        The operator; ``operator.raw_operator`` is the fitted classifier.
    container : skl2onnx.common._container.ModelComponentContainer
        Receives the nodes and initializers.
    """
    estimator = operator.raw_operator
    logits = _emit_network(scope, operator, container)
    proba = _add_node(scope, container, "Softmax", [logits], "proba", axis=1)
    _emit_output(scope, container, operator, proba, operator.outputs[1])
    index = _add_node(
        scope, container, "ArgMax", [logits], "class_index", axis=1, keepdims=0
    )
    labels = _add_labels(scope, container, _class_labels(scope, estimator))
    container.add_node(
        "Gather", [labels, index], operator.outputs[0].full_name,
        name=scope.get_unique_operator_name("Gather"), axis=0,
    )


def convert_regressor(scope, operator, container):
    """skl2onnx converter of :class:`~sk_ecprune.estimators.PrunedMLPRegressor`.

    The network output, ``(N, n_outputs_)``.

    Parameters
    ----------
    scope : skl2onnx.common._topology.Scope
        Naming scope of the conversion.
    operator : skl2onnx.common._topology.Operator
        The operator; ``operator.raw_operator`` is the fitted regressor.
    container : skl2onnx.common._container.ModelComponentContainer
        Receives the nodes and initializers.
    """
    prediction = _emit_network(scope, operator, container)
    _emit_output(scope, container, operator, prediction, operator.outputs[0])


def _classifier_parser(scope, model, inputs, custom_parsers=None):
    """skl2onnx's classifier parser, after checking that ``model`` is fitted (it reads
    ``classes_`` before any shape calculator runs)."""
    check_is_fitted(model)
    return _parse_sklearn_classifier(scope, model, inputs, custom_parsers=custom_parsers)


def register_converters():
    """Register the shape calculators and converters of both estimators with skl2onnx.

    Called when the module is imported; calling it again is harmless (it overwrites
    the same registrations).
    """
    # Imported here so that the module reads the estimators at registration time only.
    from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor

    update_registered_converter(
        PrunedMLPClassifier,
        CLASSIFIER_ALIAS,
        _classifier_shapes,
        convert_classifier,
        parser=_classifier_parser,
        options=_CLASSIFIER_OPTIONS,  # "zipmap" also registers skl2onnx's classifier parser
    )
    update_registered_converter(
        PrunedMLPRegressor, REGRESSOR_ALIAS, _regressor_shapes, convert_regressor
    )


register_converters()
