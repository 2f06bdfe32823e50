"""Quantisation in ``fit`` (``quantize_bits``, ``quantize_method``), the integer grids the
ONNX export reads, and ``model_bytes_``.

The fit stage hands the final network to :func:`sk_ecprune.engine.quantize_model`, which
rounds every ``nn.Linear`` weight to a symmetric per-row grid ``scale_i * {-qmax..qmax}``
(``qmax = 2**(bits-1) - 1``) in place, compensating the rounding as ``quantize_method``
says. The weights stay float32 on their grid, so ``predict``, ``coefs_`` and ``to_torch()``
need nothing new; the integer codes and scales are kept in ``quantization_``.

``to_torch()`` compacts the network (units pruning or rounding disconnected go), so its
layers can be smaller than ``net_.module_``'s. :func:`export_grids` finds the codes and
scales of its layers with the same compaction: a copy of the network holding the codes
as weights, and one holding each nonzero code's row scale, have the zero pattern of the
network itself, so :func:`~sk_ecprune.engine.compact` drops the same units from all three.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..engine import QUANTIZERS, compact, quantize_model
from ._callbacks import TrainingDiverged

__all__ = ["QUANTIZE_METHODS", "export_grids", "onnx_model_bytes", "quantize_network"]

#: The engine's quantisers, by the compensation they apply (as the pruning methods).
QUANTIZE_METHODS = QUANTIZERS


def quantize_network(estimator, data, batch_size):
    """The quantisation stage of ``fit``: round ``net_.module_`` in place (or not, with
    ``quantize_bits=None``) and record ``quantization_`` and ``quantization_time_``.

    Measured on the fit's own rows (``scoring_samples`` of them, drawn with the fit's
    seed) and sample weights, in the output metric pruning uses.
    """
    estimator.quantization_ = None
    estimator.quantization_time_ = 0.0
    vars(estimator).pop("_model_bytes_", None)  # measured anew for the network to come
    if estimator.quantize_bits is None:
        return
    module = estimator.net_.module_
    report = quantize_model(
        module,
        data.X,
        int(estimator.quantize_bits),
        method=estimator.quantize_method,
        sample_weight=data.sample_weight,
        output_metric=estimator._engine_output_metric(),
        batch_size=batch_size,
        max_samples=estimator.scoring_samples,
        random_state=data.seed,
    )
    bad = [name for name, p in module.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise TrainingDiverged(
            f"Quantising with quantize_method={estimator.quantize_method!r} to "
            f"{estimator.quantize_bits} bits left non-finite parameters ({', '.join(bad)})."
        )
    estimator.quantization_ = list(report.layers)
    estimator.quantization_time_ = float(report.seconds)


def _linears(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def _grid_copies(module, layers):
    """Two copies of ``module``: weights = the codes, and = each nonzero code's row scale."""
    codes_net = copy.deepcopy(module).cpu().float()
    scales_net = copy.deepcopy(module).cpu().float()
    with torch.no_grad():
        for c, s, layer in zip(_linears(codes_net), _linears(scales_net), layers):
            codes = torch.from_numpy(np.asarray(layer.codes, dtype=np.float32))
            row_scale = torch.from_numpy(np.asarray(layer.scales, dtype=np.float32))
            c.weight.copy_(codes)
            s.weight.copy_(torch.where(codes != 0, row_scale[:, None], 0.0))
    return compact(codes_net), compact(scales_net)


def export_grids(estimator, module):
    """``(codes, scales, bits)`` of each ``nn.Linear`` of ``module`` (the estimator's
    ``to_torch()``), or None when the estimator is not quantised.

    Raises a ``ValueError`` when ``codes * scales`` is not ``module``'s weight matrix (the
    network was changed after ``fit``, e.g. trained further through ``net_``).
    """
    layers = getattr(estimator, "quantization_", None)
    if layers is None:
        return None
    codes_net, scales_net = _grid_copies(estimator.net_.module_, layers)
    grids = []
    targets = _linears(module)
    for target, c, s, layer in zip(targets, _linears(codes_net), _linears(scales_net), layers):
        codes = c.weight.detach().numpy().round().astype(np.int8)
        scales = s.weight.detach().abs().amax(dim=1).numpy() if s.weight.shape[1] else None
        if scales is None or codes.shape != tuple(target.weight.shape):
            raise ValueError(_off_grid_message(estimator))
        scales = np.where(scales > 0, scales, np.float32(1)).astype(np.float32)
        rebuilt = codes.astype(np.float32) * scales[:, None]
        if not np.array_equal(rebuilt, target.weight.detach().cpu().numpy()):
            raise ValueError(_off_grid_message(estimator))
        grids.append((codes, scales, int(layer.bits)))
    if len(grids) != len(targets):
        raise ValueError(_off_grid_message(estimator))
    return grids


def _off_grid_message(estimator):
    return (
        f"The weights of this {type(estimator).__name__} are no longer the integer grids "
        "of quantization_ (was net_ trained or changed after fit?); fit it again."
    )


def onnx_model_bytes(estimator):
    """Size in bytes of ``skl2onnx.to_onnx(estimator, X[:1])`` (float32 input, default
    options and opset), or None when skl2onnx or onnx is not installed."""
    try:
        from skl2onnx import to_onnx

        from .. import onnx as _converters  # noqa: F401  (registers the converters)
    except ImportError:
        return None
    X = np.zeros((1, estimator.n_features_in_), dtype=np.float32)
    return len(to_onnx(estimator, X).SerializeToString())
