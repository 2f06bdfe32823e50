"""Compensation: changing the kept parameters so that a removal changes the output less."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["add_bias_shift"]


def add_bias_shift(layer: nn.Linear, shifts: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Add to each bias the sum of the shifts of its unit's removed weights; return that sum.

    ``shifts[i, j]`` is the bias shift that best absorbs the removal of ``W[i, j]`` alone.
    The jointly optimal shift for several removed weights of one unit is the sum of their
    individual shifts, since the linearised problem is linear in the shift.
    """
    if layer.bias is None:
        raise ValueError(
            f"{layer} has no bias to compensate with; pass compensate=False to prune it."
        )
    total = (shifts * removed.to(shifts.dtype)).sum(1)
    with torch.no_grad():
        layer.bias.add_(total.to(layer.bias.dtype))
    return total
