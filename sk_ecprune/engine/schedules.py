"""Schedules: how a target ratio is reached in steps, and how training is spread between them."""

from __future__ import annotations

from ._checks import check_positive_int

__all__ = ["gradual_schedule", "step_ratios"]


def step_ratios(ratio: float, steps: int, start: float = 0.0) -> list[float]:
    """Ratios after each step of a geometric schedule from sparsity ``start`` to ``ratio``.

    The kept fraction shrinks by the same factor at every step, so each step removes the
    same share of what is left: kept after step t = (1-start) * ((1-ratio)/(1-start))^(t/steps).
    The last ratio is ``ratio`` exactly.
    """
    steps = check_positive_int("steps", steps)
    kept_start, kept_end = 1.0 - start, 1.0 - ratio
    return [
        1.0 - kept_start * (kept_end / kept_start) ** (t / steps) for t in range(1, steps + 1)
    ][:-1] + [ratio]


def gradual_schedule(ratio: float, steps: int, epochs: int) -> list[tuple[float, int]]:
    """``(ratio after step t, training epochs after step t)`` for gradual pruning.

    The steps follow :func:`step_ratios`; the ``epochs`` are spread between them as evenly
    as whole epochs allow, ``floor(t*E/k) - floor((t-1)*E/k)`` after step t, so the last
    step always gets some when ``epochs >= 1`` and the total is ``epochs``.
    """
    ratios = step_ratios(ratio, steps)
    k = len(ratios)
    return [(r, epochs * t // k - epochs * (t - 1) // k) for t, r in enumerate(ratios, 1)]
