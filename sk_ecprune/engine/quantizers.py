"""Quantisers: methods that round each row of a layer to a symmetric per-row grid.

Rounding ``w_ij`` to its grid value ``q_ij`` perturbs the row as removing it does (removal
is rounding to 0), so the quantisers are the pruning methods with ``w -> w - q``, named
after their compensation:

- ``"rtn"``: round to nearest, nothing compensates;
- ``"ec"``: round to nearest, the bias absorbs EC's shift of the error,
  ``delta b_i = -E_{s_i}[z] . (q_i - w_i)``;
- ``"ec_obs"``: the columns of each row are rounded in turn and each rounding error is
  absorbed by the row's bias and its not-yet-rounded weights, under the damped
  ``s``-weighted statistics EC-OBS prunes with (:mod:`.scoring.ec_obs`);
- ``"gptq"``: the same sweep under GPTQ's statistics (Frantar et al. 2023): the uncentred,
  unweighted input second moment ``E[z z^T]`` shared by the rows, damped by 1% of its mean
  diagonal, the bias untouched.

The grid of row ``i``: ``scale_i * {-qmax, ..., qmax}``, ``qmax = 2^(b-1) - 1``,
``scale_i = max_j |w_ij| / qmax`` over the row's kept weights (1.0 for an all-zero row). Pruned
weights (zeros) stay zero and leave the row's problem: each row is swept over its kept
weights alone, under the sub-matrix ``K_RR`` (one factor per row, cost ``sum_i |R_i|^3``), where
that stays within :data:`MAX_ROW_FACTOR_FLOPS`; beyond (rows with many kept weights), all
rows share one column order and a pruned weight that earlier errors moved is set back to
zero at its turn, its change absorbed like a rounding error (SparseGPT's way).
"""

from __future__ import annotations

import numpy as np
import torch

from .masks import effective_weight, set_parameters
from .methods import METHODS, LayerChange, Method, register_method
from .recording import LayerRecorder, forward_recorded
from .scoring.ec_obs.procedure import layer_metrics
from .scoring.ec_obs.statistics import RowMetric
from .sensitivities import recorded_sensitivities

__all__ = ["QUANTIZERS", "ECOBSRounding", "ECRounding", "GPTQ", "Quantizer",
           "RoundToNearest", "rounding_sweep"]

F64 = torch.float64
#: Method name -> quantiser: the view of the one registry for quantisation.
QUANTIZERS = METHODS.view("quantize")
#: operations the per-row factorisations of a layer with pruned weights may take
MAX_ROW_FACTOR_FLOPS = 2**31


class Quantizer(Method):
    """Base of the quantisers: rounds every row of the layer to its grid (``step.target``
    bits). A subclass gives the row statistics (:meth:`row_metric`, None: round to
    nearest) and says whether the sweep spreads the errors (:attr:`sweeps`)."""

    kind = "quantize"
    sweeps = False

    def row_metric(self, step, index) -> RowMetric | None:
        """The quadratic form of a change of each row of layer ``index``, bias eliminated."""
        return None

    def change(self, step, plan, index) -> LayerChange:
        layer = step.layers[index]
        W0 = effective_weight(layer).double()
        kept = W0 != 0
        qmax = 2 ** (int(step.target) - 1) - 1
        scales = row_scales(W0, qmax)
        metric = self.row_metric(step, index)
        if self.sweeps:
            codes = rounding_sweep(metric, W0, scales.double(), qmax, ~kept)
        else:
            codes = torch.where(kept, _round(W0, scales.double().unsqueeze(1), qmax), 0.0)
        new = (codes.float() * scales.unsqueeze(1)).to(layer.weight.dtype)  # exactly this
        delta = new.double() - W0
        shift = None
        if metric is not None and layer.bias is not None and bool(metric.zmean.any()):
            shift = torch.where(metric.beta > 0, -(metric.zmean * delta).sum(1), 0.0)
        set_parameters(layer, new, None if shift is None else layer.bias.detach().double() + shift)
        moved = float(torch.where(kept, delta - _rounding_only(W0, scales, qmax, kept), 0.0).norm())
        quantization = (scales.cpu().numpy().astype(np.float32),
                        codes.cpu().numpy().astype(np.int8))
        return LayerChange(shift, moved if self.sweeps else 0.0,
                           compensated=shift is not None or self.sweeps, quantization=quantization)


def row_scales(W: torch.Tensor, qmax: int) -> torch.Tensor:
    """float32 scale of each row: its largest absolute weight over ``qmax``, 1 if all zero."""
    largest = W.abs().amax(1).float()
    return torch.where(largest > 0, largest / qmax, torch.ones_like(largest))


def _round(x, scale, qmax):
    """Codes (as float64) of ``x`` on the grid ``scale * {-qmax..qmax}`` (``scale``
    broadcast against ``x``): round to nearest, clamped to the grid."""
    return torch.clamp(torch.round(x / scale), -qmax, qmax)


def _rounding_only(W0, scales, qmax, kept):
    """The change that rounding each weight to nearest alone would make (for the report)."""
    codes = torch.where(kept, _round(W0, scales.double().unsqueeze(1), qmax), 0.0)
    return (codes.float() * scales.unsqueeze(1)).double() - W0


def rounding_sweep(metric: RowMetric, W0: torch.Tensor, scales: torch.Tensor, qmax: int,
                   frozen: torch.Tensor) -> torch.Tensor:
    """Codes of every row after the column sweep (see the module docstring), float64.

    Rows with pruned (``frozen``) weights are swept over their kept weights alone, under
    ``K_RR`` (a factor per row, rows of similar size batched), while the factors' total cost
    stays within :data:`MAX_ROW_FACTOR_FLOPS`; else all rows share the natural order and
    the factor of ``K^-1``, and a pruned weight is set back to zero at its turn.
    """
    n, d = W0.shape
    kept = ~frozen
    sizes = kept.sum(1)
    live = metric.beta > 0
    if not frozen.any() or float((sizes.double() ** 3).sum()) / 3 > MAX_ROW_FACTOR_FLOPS \
            or metric.K.shape[0] > 1:
        U = torch.linalg.cholesky(metric.inverse()[:1], upper=True)
        return _sweep(U, W0.double(), scales, qmax, frozen, live)
    codes = torch.zeros(n, d, dtype=F64, device=W0.device)
    for rows in _rows_of_similar_size(sizes):
        m = max(1, int(sizes[rows].max()))
        order = torch.argsort(frozen[rows].to(torch.int8), dim=1, stable=True)[:, :m]
        valid = torch.arange(m, device=W0.device).unsqueeze(0) < sizes[rows].unsqueeze(1)
        U = _kept_factors(metric.K[0], order, valid)
        x = torch.where(valid, torch.gather(W0[rows].double(), 1, order), 0.0)
        part = _sweep(U, x, scales[rows], qmax, ~valid, live[rows])
        codes[rows] = torch.zeros(len(rows), d, dtype=F64, device=W0.device).scatter_(
            1, order, torch.where(valid, part, 0.0))
    return codes


def _rows_of_similar_size(sizes, max_elements=2**22):
    """Batches of row indices, by ascending size, each padded size squared times its rows
    within ``max_elements``."""
    ranked = torch.argsort(sizes, stable=True)
    start = 0
    while start < len(ranked):
        stop = start + 1
        while stop < len(ranked) and (stop + 1 - start) * int(sizes[ranked[stop]]) ** 2 \
                <= max_elements:
            stop += 1
        yield ranked[start:stop]
        start = stop


def _kept_factors(K, order, valid):
    """Upper Cholesky factors of ``(K_RR)^-1`` per row (``R = order[valid]``), identity on
    the padding, which thus couples to nothing."""
    m = order.shape[1]
    sub = K[order.unsqueeze(2), order.unsqueeze(1)]
    pad = ~(valid.unsqueeze(2) & valid.unsqueeze(1))
    sub = torch.where(pad, torch.eye(m, dtype=F64, device=K.device).expand_as(sub), sub)
    # With J the reversal, J K J = L L^T gives K^-1 = U^T U for U = J L^-1 J (upper): one
    # factorisation and one triangular inverse instead of inverting and factorising again
    lower = torch.linalg.cholesky(sub.flip(1, 2))
    eye = torch.eye(m, dtype=F64, device=K.device).expand_as(sub)
    return torch.linalg.solve_triangular(lower, eye, upper=False).flip(1, 2)


def _sweep(U, X, scales, qmax, frozen, live, block=64):
    """The sweep of the rows ``X`` (in their column order) with the factors ``U`` (one
    shared, or one per row); returns the codes. Column ``j`` is rounded to ``q``; the later
    columns move by ``-(x_j - q) / U_jj * U_j,>j``, lazily, a block of columns at a time."""
    n, d = X.shape
    X = X.clone()
    codes = torch.zeros(n, d, dtype=F64, device=X.device)
    shared = U.shape[0] == 1
    for j0 in range(0, d, block):
        j1 = min(d, j0 + block)
        Ub = U[0, j0:j1, j0:j1] if shared else U[:, j0:j1, j0:j1]
        Xb = X[:, j0:j1].clone()
        errors = torch.zeros(n, j1 - j0, dtype=F64, device=X.device)
        for jj in range(j1 - j0):
            u = Ub[jj, jj:] if shared else Ub[:, jj, jj:]
            code = torch.where(frozen[:, j0 + jj], 0.0, _round(Xb[:, jj], scales, qmax))
            pivot = u[0] if shared else u[:, 0]
            error = torch.where(live, (Xb[:, jj] - code * scales) / pivot, 0.0)
            Xb[:, jj:] -= error.unsqueeze(1) * u
            codes[:, j0 + jj] = code
            errors[:, jj] = error
        X[:, j0:j1] = Xb
        if j1 < d:
            if shared:
                X[:, j1:] -= errors @ U[0, j0:j1, j1:]
            else:
                X[:, j1:] -= torch.bmm(errors.unsqueeze(1), U[:, j0:j1, j1:]).squeeze(1)
    return codes


@register_method("rtn")
class RoundToNearest(Quantizer):
    """Round to nearest on per-row grids; nothing compensates."""


@register_method("ec")
class ECRounding(Quantizer):
    """Round to nearest; the bias absorbs EC's shift of the rounding error."""

    def row_metric(self, step, index):
        """Only EC's ``B = E[s]`` and ``E[s z]``: the bias shift needs the weighted mean."""
        layer = step.layers[index]
        B = torch.zeros(layer.out_features, dtype=F64, device=layer.weight.device)
        A = torch.zeros(layer.out_features, layer.in_features, dtype=F64, device=B.device)
        for inputs, sensitivities, w in recorded_sensitivities(
                step.module, step.layers, step.data, step.output_metric):
            s = sensitivities[index] if w is None else sensitivities[index] * w.unsqueeze(1)
            B += s.sum(0, dtype=F64)
            A += (s.T @ inputs[index]).double()
        alive = B > 0
        safe = torch.where(alive, B, torch.ones_like(B)).unsqueeze(1)
        zmean = torch.where(alive.unsqueeze(1), A / safe, 0.0)
        return RowMetric(torch.zeros(1, 1, 1, dtype=F64), torch.zeros_like(B, dtype=torch.long),
                         B, zmean)


@register_method("ec_obs")
class ECOBSRounding(Quantizer):
    """EC-OBS sweep: the bias and the not-yet-rounded weights absorb each rounding error.

    Parameters
    ----------
    damp : float, default=0.01
        EC-OBS's damping (:func:`~.scoring.ec_obs.statistics.row_metric`).
    """

    sweeps = True

    def __init__(self, damp=0.01):
        self.damp = damp

    def row_metric(self, step, index):
        return layer_metrics(step.module, step.layers, step.data, step.output_metric,
                             "shared", self.damp, only=[index])[index]


@register_method("gptq")
class GPTQ(Quantizer):
    """GPTQ as published: uncentred unweighted ``E[z z^T]`` shared by the rows, bias untouched.

    Parameters
    ----------
    damp : float, default=0.01
        Added to the diagonal, as a fraction of its mean (GPTQ's ``percdamp``).
    """

    sweeps = True

    def __init__(self, damp=0.01):
        self.damp = damp

    def row_metric(self, step, index):
        layer = step.layers[index]
        d = layer.in_features
        second = torch.zeros(d, d, dtype=F64, device=layer.weight.device)
        with LayerRecorder(step.layers) as recorder:
            for Xb, _, wb in step.data:
                forward_recorded(step.module, recorder, Xb, keep_graph=False)
                z = recorder.inputs[index].detach()
                weighted = z if wb is None else z * wb.unsqueeze(1)
                second += (weighted.T @ z).double()
                recorder.clear()
        H = second / step.data.total_weight
        diag = torch.diagonal(H)
        dead = diag == 0
        H[dead, dead] = 1.0  # GPTQ: an input that is always zero does not couple
        H += self.damp * float(torch.diagonal(H).mean()) * torch.eye(d, dtype=F64,
                                                                     device=H.device)
        n = layer.out_features
        return RowMetric(H.unsqueeze(0), torch.zeros(n, dtype=torch.long, device=H.device),
                         torch.ones(n, dtype=F64, device=H.device),
                         torch.zeros(n, d, dtype=F64, device=H.device))
