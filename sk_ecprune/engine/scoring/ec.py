"""Elimination-compensation (EC) and Optimal Brain Damage: scores from EC's statistics.

With ``s_i(x)`` the output sensitivity of unit ``i`` and ``z_j`` the layer's input::

    B_i = E[s_i],  A_ij = E[s_i z_j],  C_ij = E[s_i z_j^2]
    EC:   I_ij = W_ij^2 (C_ij - A_ij^2 / B_i),    delta_b_ij = W_ij A_ij / B_i
    OBD:  I_ij = W_ij^2 C_ij                       (no compensation)

accumulated batch by batch, so memory does not depend on the number of samples
(``docs/method.md`` derives them). With weighted data every expectation is the weighted
mean: each row's ``s`` is multiplied by its weight and the sums are divided by the total
weight.
"""

from __future__ import annotations

import torch
from torch import nn

from ..masks import effective_weight
from ..recording import ScoringData
from ..sensitivities import recorded_sensitivities
from ..methods import register_method
from .registry import Importance, WeightScorer

__all__ = ["EC", "OBD", "ec_statistics"]


class _ECStatistics:
    """Streaming sums of B, A and C for one layer.

    ``z`` is centred on a per-feature shift (the first batch's mean) before the products, so
    that ``C - A^2 / B`` does not cancel catastrophically; products and sums run in float64.
    Without ``second_moments`` (EC-OBS, which needs only ``B`` and ``A``) ``C`` is not kept.
    """

    def __init__(self, second_moments: bool = True):
        self.total = 0.0  # rows seen, or their total weight
        self.second_moments = second_moments
        self.shift = self.B = self.A = self.C = None

    def update(self, s: torch.Tensor, z: torch.Tensor, w: torch.Tensor | None = None,
               z64: torch.Tensor | None = None) -> None:
        """Add a batch: sensitivities ``s`` (n, units), inputs ``z`` (n, in), weights ``w``
        (``z64``: ``z`` already converted to float64, if the caller has it)."""
        s, z = s.detach(), z.detach()
        if self.shift is None:
            self.shift = z.mean(0)
            self.B = torch.zeros(s.shape[1], dtype=torch.float64, device=s.device)
            self.A = torch.zeros(s.shape[1], z.shape[1], dtype=torch.float64, device=s.device)
            self.C = torch.zeros_like(self.A) if self.second_moments else None
        centred = (z.double() if z64 is None else z64) - self.shift.double()
        if w is None:
            self.total += z.shape[0]
        else:
            s = s * w.unsqueeze(1)
            self.total += float(w.sum(dtype=torch.float64))
        s = s.double()
        self.B += s.sum(0)
        self.A += s.T @ centred
        if self.second_moments:
            self.C += s.T @ centred.square()

    def means(self):
        """``B``, ``A`` and ``C`` as expectations, ``A`` and ``C`` still about the shift
        (``C`` None when not kept)."""
        C = None if self.C is None else self.C / self.total
        return self.B / self.total, self.A / self.total, C

    def ec(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """EC scores ``W^2 (C - A^2/B)`` and shifts ``W A / B``; zero for dead units (B = 0)."""
        B, A, C = self.means()
        alive = (B > 0).unsqueeze(1)
        safe_B = torch.where(alive, B.unsqueeze(1), torch.ones_like(B).unsqueeze(1))
        weighted_mean = A / safe_B  # E_s[z - shift]
        variance = _variance(B, A, C, self.shift.double())
        W = weight.double()
        scores = torch.where(alive, W.square() * variance, 0.0)
        shifts = torch.where(alive, W * (weighted_mean + self.shift.double()), 0.0)
        return scores, shifts

    def obd(self, weight: torch.Tensor) -> torch.Tensor:
        """Optimal Brain Damage (Gauss-Newton) score ``W^2 E[s z^2]``, no compensation."""
        B, A, C = self.means()
        c = self.shift.double()
        uncentred_C = C + 2 * c * A + c.square() * B.unsqueeze(1)
        return weight.double().square() * uncentred_C.clamp_min(0)


def _variance(B, A, C, shift):
    """``C - A^2/B`` (``B`` times the ``s``-weighted variance of each input), 0 where the
    input is constant: at or below the rounding level (1e-9) of its weighted mean square,
    where the bias absorbs its weight exactly (rounding would otherwise leave a residue or
    push it below zero)."""
    alive = (B > 0).unsqueeze(1)
    B = B.unsqueeze(1)
    variance = C - A * torch.where(alive, A / torch.where(alive, B, 1.0), 0.0)
    mean_square = C + 2 * shift * A + shift.square() * B  # B E_s[z^2]
    return torch.where(variance > 1e-9 * mean_square.clamp_min(0), variance, 0.0)


def ec_statistics(
    module: nn.Module, layers: list[nn.Linear], data: ScoringData, output_metric: str
) -> list[_ECStatistics]:
    """Accumulate the EC statistics of every layer over ``data``.

    Per batch: one forward pass that records each layer's input and pre-activation, the
    per-sample sensitivities (:func:`~sk_ecprune.engine.sensitivities.recorded_sensitivities`),
    two matrix products per layer; weighted rows (``data.weights``) count by their weight.
    """
    stats = [_ECStatistics() for _ in layers]
    for inputs, sensitivities, w in recorded_sensitivities(module, layers, data, output_metric):
        for stat, z, s in zip(stats, inputs, sensitivities):
            stat.update(s, z, w)
    return stats


@register_method("ec")
class EC(WeightScorer):
    """Elimination-compensation: least output change left after the best bias shift."""

    def importance(self, module, layers, data, *, output_metric="euclidean", **_) -> Importance:
        stats = ec_statistics(module, layers, data, output_metric)
        pairs = [s.ec(effective_weight(layer)) for s, layer in zip(stats, layers)]
        return Importance([p[0] for p in pairs], [p[1] for p in pairs])


@register_method("obd")
class OBD(WeightScorer):
    """Optimal Brain Damage, Gauss-Newton form: EC's output change without compensation."""

    def importance(self, module, layers, data, *, output_metric="euclidean", **_) -> Importance:
        stats = ec_statistics(module, layers, data, output_metric)
        return Importance([s.obd(effective_weight(layer)) for s, layer in zip(stats, layers)])
