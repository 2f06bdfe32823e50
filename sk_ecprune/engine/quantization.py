"""``quantize_model``: round every linear layer to a per-row integer grid, with compensation.

Orchestration only: the quantisers are methods of :mod:`.quantizers` (the registry of
:mod:`.methods`, kind ``"quantize"``), run by :func:`~.methods.run_steps` as one step.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from . import quantizers  # noqa: F401  (registers the quantisers)
from .methods import resolve_method, run_steps
from .pruning import subsample
from .recording import linear_layers
from .sensitivities import METRICS
from ._checks import check_choice

__all__ = ["LayerQuantization", "QuantizationReport", "quantize_model"]

MIN_BITS, MAX_BITS = 2, 8


@dataclass
class LayerQuantization:
    """One quantised ``nn.Linear`` layer: ``weight == codes * scales[:, None]`` in float32.

    Attributes
    ----------
    name : str
        The layer's name in ``module.named_modules()``.
    bits : int
        Bits per weight; codes lie in ``[-qmax, qmax]``, ``qmax = 2**(bits-1) - 1``.
    method : str
        The quantiser (its name, or the repr of the instance given).
    scales : numpy.ndarray of float32, shape (out_features,)
        The step of each row's grid (1.0 for a row without weights).
    codes : numpy.ndarray of int8, shape (out_features, in_features)
        The integer weights; pruned weights have code 0.
    """

    name: str
    bits: int
    method: str
    scales: np.ndarray
    codes: np.ndarray

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def weight(self) -> np.ndarray:
        """The float32 weight the layer holds: ``codes * scales[:, None]``."""
        return self.codes.astype(np.float32) * self.scales[:, None]


@dataclass
class QuantizationReport:
    """Result of :func:`quantize_model`: per layer its grid and codes; the time it took."""

    method: str
    bits: int
    layers: list[LayerQuantization] = field(default_factory=list)
    seconds: float = 0.0
    compensated: bool = False

    def __str__(self) -> str:
        lines = [f"{self.method} quantisation to {self.bits} bits of {len(self.layers)} "
                 f"layer(s) in {self.seconds:.2f} s"]
        lines += [f"  {layer.name or '<module>'}: {layer.codes.shape[0]} rows x "
                  f"{layer.codes.shape[1]}" for layer in self.layers]
        return "\n".join(lines)


def quantize_model(module: nn.Module, X, bits: int, *, method="ec_obs", sample_weight=None,
                   output_metric: str = "euclidean", batch_size: int = 1024,
                   max_samples: int | None = None, random_state=None,
                   check_finite: bool = True) -> QuantizationReport:
    """Round the weights of every ``nn.Linear`` of ``module`` to per-row grids, in place.

    Layers go from the input side, each measured on the network whose earlier layers are
    already quantised. Each row gets the symmetric grid ``scale * {-qmax..qmax}`` with
    ``scale`` its largest kept weight over ``qmax = 2**(bits-1) - 1``; the layer's weight
    becomes ``codes * scale`` exactly (computed in float32), and its bias moves as the
    method compensates. Pruned weights (masked through ``torch.nn.utils.prune`` or zero)
    stay zero; masks stay in place.

    Parameters
    ----------
    module : torch.nn.Module
        Any module whose ``nn.Linear`` layers are each applied once per sample.
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Data for the statistics. Never modified.
    bits : int in [2, 8]
        Bits per weight.
    method : str or Method, default="ec_obs"
        ``"ec_obs"``, ``"ec"``, ``"gptq"``, ``"rtn"`` (:mod:`.quantizers`), another name
        registered for quantisation, or a quantiser instance (e.g. ``ECOBSRounding(damp=0.1)``).
    sample_weight : array-like of shape (n_samples,), default=None
        Weight of each row of ``X`` in the statistics.
    output_metric : {"euclidean", "fisher"}, default="euclidean"
        How a change of the output is measured (``"ec"``, ``"ec_obs"``).
    batch_size : int, default=1024
        Rows per pass.
    max_samples : int or None, default=None
        Measure on a random subset of this many rows (from ``random_state``).
    random_state : int, torch.Generator or None, default=None
        Seed of the subset.
    check_finite : bool, default=True
        Check ``X`` for NaN and infinity.

    Returns
    -------
    report : QuantizationReport
    """
    start = time.perf_counter()
    bits = _check_bits(bits)
    quantizer, name = resolve_method(method, "quantize")
    check_choice("output_metric", output_metric, METRICS)
    data = subsample(X, None, sample_weight, max_samples, random_state)
    named = linear_layers(module)
    totals = run_steps(quantizer, module, [bits], data, method_name=name,
                       batch_size=batch_size, check_finite=check_finite,
                       random_state=random_state, output_metric=output_metric)
    report = QuantizationReport(name, bits, compensated=any(t.compensated for t in totals))
    for (layer_name, _), total in zip(named, totals):
        scales, codes = total.changes[-1].quantization
        report.layers.append(LayerQuantization(layer_name, bits, name, scales, codes))
    report.seconds = time.perf_counter() - start
    return report


def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) \
            or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer from {MIN_BITS} to {MAX_BITS}; got {bits!r}.")
    return int(bits)
