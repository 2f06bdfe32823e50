"""The brute-force reference score (paper eq. 3), vectorised over weights.

A reference, not a tool: it costs one forward pass of the network's tail per weight.

Removing ``W[i, j]`` and shifting ``b[i]`` by ``W[i, j] E[z_j]`` changes a single
pre-activation by ``-W[i, j] (z_j(x) - E[z_j])``. So instead of one forward pass of the
whole network per weight, a forward hook on the layer replaces its output by ``P`` copies,
each with one pre-activation perturbed, and only the layers after it see the larger batch.
"""

from __future__ import annotations

import torch
from torch import nn

from ..masks import effective_weight
from ..recording import LayerRecorder, ScoringData
from ..methods import register_method
from .registry import Importance, WeightScorer

# Elements in the widest activation of one perturbed batch (P copies x batch x width).
_CHUNK_ELEMENTS = 2**23


def input_means(module: nn.Module, layers: list[nn.Linear], data: ScoringData) -> list[torch.Tensor]:
    """Mean ``E[z_j]`` of each layer's input over ``data`` (weighted if it is), in float64."""
    sums = [torch.zeros(layer.in_features, dtype=torch.float64, device=data.device) for layer in layers]
    with LayerRecorder(layers) as recorder, torch.no_grad():
        for Xb, _, wb in data:
            recorder.clear()
            module(Xb)
            for total, z in zip(sums, recorder.inputs):
                total += z.sum(0, dtype=torch.float64) if wb is None else wb.double() @ z.double()
    return [total / data.total_weight for total in sums]


def _output_change(diff, reference, metric, weights=None) -> torch.Tensor:
    """Per-copy sum over samples of ``|diff|^2`` in ``metric`` (each sample times its weight,
    if ``weights`` of shape (N,) are given); ``diff`` is (P, N, K)."""
    diff = diff.double()
    if metric == "euclidean":
        terms = diff.square()
    else:
        p = torch.softmax(reference.double(), dim=1).unsqueeze(0)  # (1, N, K)
        mean = (p * diff).sum(2, keepdim=True)
        terms = p * (diff - mean).square()
    if weights is None:
        return terms.sum((1, 2))
    return terms.sum(2) @ weights.double()


class _PerturbOneUnit:
    """Forward hook: ``P`` copies of a layer's output, copy ``p`` with unit ``rows[p]`` moved by
    ``-values[p] (z[:, cols[p]] - means[cols[p]])``."""

    def __init__(self, rows, cols, values, means, n_samples):
        self.rows, self.cols, self.values = rows, cols, values
        self.means, self.n_samples = means, n_samples

    def __call__(self, layer, args, out):
        n_copies, n = len(self.rows), self.n_samples
        z = args[0]
        if out.shape[0] == n:  # only this layer's output is copied
            inputs = z[:, self.cols].T  # (P, N)
            copies = out.unsqueeze(0).expand(n_copies, n, out.shape[1]).clone()
        else:  # the caller replicated the whole input batch
            z = z.view(n_copies, n, -1)
            inputs = z[torch.arange(n_copies), :, self.cols]
            copies = out.view(n_copies, n, -1).clone()
        centred = inputs - self.means[self.cols].unsqueeze(1).to(inputs.dtype)
        copies[torch.arange(n_copies), :, self.rows] -= self.values.unsqueeze(1) * centred
        return copies.reshape(n_copies * n, -1)


def _perturbed_outputs(module, layer, Xb, hook, replicate) -> torch.Tensor:
    n_copies = len(hook.rows)
    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = module(Xb.repeat(n_copies, 1) if replicate else Xb)
    finally:
        handle.remove()
    return out.reshape(n_copies, Xb.shape[0], -1)


def _needs_replication(module, layer, data, rows, cols, values, means) -> bool:
    """Whether copying only the layer's output breaks the module (it mixes in tensors of the
    original batch size, e.g. through a residual connection), so the input must be copied."""
    Xb, _, _ = next(iter(data))
    Xb = Xb[:2]
    pair = slice(0, 2)
    hook = _PerturbOneUnit(rows[pair].repeat(2)[:2], cols[pair].repeat(2)[:2],
                           values[pair].repeat(2)[:2], means, Xb.shape[0])
    try:
        _perturbed_outputs(module, layer, Xb, hook, replicate=False)
    except RuntimeError:
        return True
    return False


def nonlinear_output_change(
    module: nn.Module,
    layers: list[nn.Linear],
    data: ScoringData,
    index: int,
    means: torch.Tensor,
    metric: str = "euclidean",
) -> torch.Tensor:
    """``E[|y - y_pruned|^2]`` for every weight of ``layers[index]`` removed on its own.

    The expectation is weighted by ``data.weights`` when the data carry weights.

    Weights already zero score 0. Only the layer's output is copied where the module allows
    it; if the module combines that output with tensors of the original batch size (a
    residual connection, say), the whole input batch is replicated instead, which is slower
    but works for any module.
    """
    layer = layers[index]
    weight = effective_weight(layer)
    rows, cols = weight.nonzero(as_tuple=True)
    values = weight[rows, cols]
    scores = torch.zeros_like(weight, dtype=torch.float64)
    if len(rows) == 0:
        return scores
    with torch.no_grad():
        references = [module(Xb).reshape(Xb.shape[0], -1) for Xb, _, _ in data]
    replicate = _needs_replication(module, layer, data, rows, cols, values, means)
    # Copies of the tail's activations (or of everything, when replicating) bound the chunk.
    widths = [l.out_features for l in layers[index:]]
    if replicate:
        widths += [l.in_features for l in layers] + [data.X.shape[1]]
    chunk = max(1, _CHUNK_ELEMENTS // (data.batch_size * max(widths)))
    for start in range(0, len(rows), chunk):
        part = slice(start, start + chunk)
        change = torch.zeros(len(rows[part]), dtype=torch.float64, device=weight.device)
        for (Xb, _, wb), reference in zip(data, references):
            hook = _PerturbOneUnit(rows[part], cols[part], values[part], means, Xb.shape[0])
            outputs = _perturbed_outputs(module, layer, Xb, hook, replicate)
            change += _output_change(outputs - reference, reference, metric, wb)
        scores[rows[part], cols[part]] = change / data.total_weight
    return scores


@register_method("nonlinear")
class Nonlinear(WeightScorer):
    """Brute force (paper eq. 3): the real output change of each removal, with bias shift.

    Removing ``W[i, j]`` shifts ``b[i]`` by ``W[i, j] E[z_j]``; the score is the measured
    ``E[|y - y_pruned|^2]``. Costs one forward pass of the network's tail per weight.
    """

    def importance(self, module, layers, data, *, output_metric="euclidean", **_) -> Importance:
        means = input_means(module, layers, data)
        weights = [effective_weight(layer) for layer in layers]
        scores = [
            nonlinear_output_change(module, layers, data, index, means[index], output_metric)
            for index in range(len(layers))
        ]
        shifts = [W.double() * mu.double() for W, mu in zip(weights, means)]
        return Importance(scores, shifts)
