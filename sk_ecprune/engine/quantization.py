"""Quantisation of a module's ``nn.Linear`` weights to symmetric per-row integer grids.

Rounding weight ``w_ij`` to its grid value ``q_ij`` perturbs the row as removing it does
(``q_ij = 0``), so the compensations of pruning carry over with ``w_ij -> w_ij - q_ij``:

- ``"rtn"``: round to nearest, nothing compensates;
- ``"ec"``: round to nearest, the bias absorbs the expected change (EC's shift of the error,
  ``db_i = -zbar_i . (q_i - w_i)`` with ``zbar_i`` the unit's output-weighted input mean);
- ``"ec_obs"``: sweep the row's columns in order; after rounding column ``j`` the not yet
  rounded weights move by the OBS update of that error under EC-OBS's reduced form ``K``
  (the output-weighted input covariance, damped), and the bias follows the total change;
- ``"gptq"``: the same sweep with the uncentred, unweighted input second moment
  ``E[z z^T]`` (GPTQ, Frantar et al. 2023), bias untouched.

Layers go from the input side, each measured on the network whose earlier layers are
already quantised. Grid: ``scale_i * {-qmax..qmax}``, ``qmax = 2**(bits-1) - 1``,
``scale_i = max_j |w_ij| / qmax`` of the row before the sweep; codes are clamped to the
grid. Weights already zero stay zero and leave the row's form (their rows and columns of
``K`` are decoupled). Each weight is written as ``codes * scale`` in float32, exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .masks import effective_weight, set_parameters
from .pruning import _subsample
from .recording import linear_layers, scoring_session
from .scoring.ec_obs.procedure import layer_metrics

__all__ = ["QUANTIZERS", "LayerQuantization", "QuantizationReport", "quantize_model"]

#: The quantisers, named after their compensation as the pruning methods are.
QUANTIZERS = ("ec_obs", "ec", "gptq", "rtn")
F64 = torch.float64
_CHUNK_ELEMENTS = 2**23  # float64 numbers of the per-row forms held at once


@dataclass
class LayerQuantization:
    """One quantised layer: ``weight == codes * scales[:, None]`` (float32)."""

    name: str
    bits: int
    method: str
    scales: np.ndarray  # float32, (out_features,)
    codes: np.ndarray  # int8, (out_features, in_features)


@dataclass
class QuantizationReport:
    """What :func:`quantize_model` did: one record per ``nn.Linear``, and its time."""

    layers: list = field(default_factory=list)
    seconds: float = 0.0


def quantize_model(module, X, bits, *, method="ec_obs", sample_weight=None,
                   output_metric="euclidean", batch_size=1024, max_samples=None,
                   random_state=None, damp=0.01) -> QuantizationReport:
    """Round every ``nn.Linear`` weight of ``module`` to ``bits`` bits, in place.

    Parameters
    ----------
    module : torch.nn.Module
        Any module the engine accepts (``torch.nn.utils.prune`` masks included).
    X : array-like or tensor of shape (n_samples, n_features)
        Rows on which the statistics are measured.
    bits : int in [2, 8]
    method : {"ec_obs", "ec", "gptq", "rtn"}, default="ec_obs"
    sample_weight, output_metric, batch_size, max_samples, random_state
        As for :func:`~sk_ecprune.engine.prune_model`.
    damp : float, default=0.01
        Damping of the sweep's forms, a fraction of their mean diagonal.

    Returns
    -------
    QuantizationReport
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an int from 2 to 8; got {bits!r}.")
    if method not in QUANTIZERS:
        raise ValueError(f"method must be one of {QUANTIZERS}; got {method!r}.")
    start = time.perf_counter()
    X, _, sample_weight = _subsample(X, None, sample_weight, max_samples, random_state)
    report = QuantizationReport()
    names = [name for name, _ in linear_layers(module)]
    with scoring_session(module, X, None, batch_size, True, sample_weight) as (layers, data):
        for index, layer in enumerate(layers):
            form = _layer_form(module, layers, index, data, method, output_metric, damp)
            codes, scale, shift = _round_layer(effective_weight(layer).to(F64), int(bits),
                                               form)
            weight = codes.float() * scale[:, None]
            bias = None if layer.bias is None or shift is None else (
                layer.bias.detach().double() + shift)
            set_parameters(layer, weight, bias)
            report.layers.append(LayerQuantization(
                names[index], int(bits), method, scale.cpu().numpy(),
                codes.to(torch.int8).cpu().numpy()))
    report.seconds = time.perf_counter() - start
    return report


def _layer_form(module, layers, index, data, method, output_metric, damp):
    """``(K per row, bias direction)`` of the layer: None for round to nearest."""
    if method == "rtn":
        return None
    if method == "gptq":
        return _input_second_moment(module, layers[index], data, damp), None
    metric = layer_metrics(module, layers, data, output_metric, "shared", damp,
                           only=[index])[index]
    free_bias = layers[index].bias is not None
    zmean = metric.zmean if free_bias else None
    if method == "ec":
        return None, zmean
    shared = metric.K.shape[0] == 1  # one form for the layer: never copied per row
    return (metric.K if shared else metric.K[metric.group]), zmean


def _input_second_moment(module, layer, data, damp):
    """GPTQ's form: ``E[z z^T]`` of the layer's input (weighted rows), damped."""
    total, weight = None, 0.0

    def record(_, args, __):
        nonlocal total
        z = args[0].detach().reshape(-1, layer.in_features).double()
        zw = z if wb is None else z * wb.double().unsqueeze(1)
        total = z.T @ zw if total is None else total + z.T @ zw

    handle = layer.register_forward_hook(record)
    try:
        with torch.no_grad():
            for Xb, _, wb in data:
                module(Xb)
                weight += len(Xb) if wb is None else float(wb.sum())
    finally:
        handle.remove()
    H = total / weight
    lam = damp * float(torch.diagonal(H).mean()) + 1e-12
    return (H + lam * torch.eye(len(H), dtype=F64, device=H.device)).unsqueeze(0)


def _round_layer(W, bits, form):
    """``(codes, float32 scales, bias shift or None)`` of one layer."""
    qmax = 2 ** (bits - 1) - 1
    scale = (W.abs().amax(1) / qmax).float()
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    s = scale.double()
    if form is None:
        return torch.clamp(torch.round(W / s[:, None]), -qmax, qmax), scale, None
    K, zmean = form
    if K is None:  # "ec": round to nearest, the bias takes the expected change
        codes = torch.clamp(torch.round(W / s[:, None]), -qmax, qmax)
    else:
        codes = _sweep(W, K, s, qmax)
    if zmean is None:
        return codes, scale, None
    change = codes * s[:, None] - W
    return codes, scale, -(zmean * change).sum(1)


def _sweep(W0, K, s, qmax):
    """The column sweep (GPTQ's update with each row's own form ``K``: one shared
    ``(1, in, in)`` or one per row).

    With pruned entries (``W0 == 0``) each row sweeps only its kept columns, in order,
    under its form restricted to them (rows in chunks, padded to the widest row with
    decoupled columns of weight zero), so that no update reaches a pruned weight.
    """
    out, d = W0.shape
    kept = W0 != 0
    if K.shape[0] == 1 and bool(kept.all()):  # one form for every row
        return _sweep_rows(W0.clone(), _inverse_factor(K), s, qmax)
    codes = torch.zeros_like(W0)
    width = max(int(kept.sum(1).max()), 1)
    # each row's kept columns first, in their order; pruned ones pad the rest
    order = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)[:, :width]
    valid = torch.gather(kept, 1, order)
    chunk = max(1, _CHUNK_ELEMENTS // (width * width))
    for r0 in range(0, out, chunk):
        r1 = min(out, r0 + chunk)
        idx, m = order[r0:r1], valid[r0:r1]
        if K.shape[0] == 1:
            Kc = K[0][idx[:, :, None], idx[:, None, :]]
        else:
            rows = torch.arange(r0, r1, device=K.device)[:, None, None]
            Kc = K[rows, idx[:, :, None], idx[:, None, :]]
        Kc = Kc * (m[:, :, None] & m[:, None, :]) + torch.diag_embed((~m).to(F64))
        Wc = torch.gather(W0[r0:r1], 1, idx) * m
        part = _sweep_rows(Wc, _inverse_factor(Kc), s[r0:r1], qmax) * m
        codes[r0:r1].scatter_(1, idx, part)
    return codes


def _inverse_factor(K):
    """The upper Cholesky factor of ``K^-1`` (batched), GPTQ's form of the OBS updates."""
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(K)), upper=True)


def _sweep_rows(W, U, s, qmax):
    """Round ``W``'s columns in order, each error spread over the later columns by ``U``
    (``(rows or 1, n, n)``); ``W`` is overwritten. Returns the codes."""
    codes = torch.zeros_like(W)
    for j in range(W.shape[1]):
        q = torch.clamp(torch.round(W[:, j] / s), -qmax, qmax)
        err = (W[:, j] - q * s) / U[:, j, j]
        W[:, j + 1:] -= err[:, None] * U[:, j, j + 1:]
        codes[:, j] = q
    return codes
