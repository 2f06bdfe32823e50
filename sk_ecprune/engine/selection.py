"""Selection: which weights to remove, given their scores and a target ratio.

Three scopes: ``"global"`` ranks all layers together, ``"layer"`` removes the same fraction
of every layer, ``"magnitude_budget"`` lets global magnitude pruning decide how many weights
each layer loses and the method's scores which ones. Counts are exact: ties are broken by
position. Weights already absent count as removed and are never brought back.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "SCOPES",
    "check_reachable",
    "n_protected",
    "select",
    "select_kept_weights",
    "select_within_budget",
]

SCOPES = ("global", "layer", "magnitude_budget")


def n_protected(n_weights: int, layer_floor: float) -> int:
    """Weights of a layer of ``n_weights`` that ``layer_floor`` keeps: ``ceil(floor * n)``.

    The small tolerance keeps a floor such as 0.3 of 10 weights at 3, not 4, despite
    rounding in ``0.3 * 10``.
    """
    return math.ceil(layer_floor * n_weights - 1e-9)


def check_reachable(sizes: list[int], ratio: float, layer_floor: float) -> None:
    """Refuse, before anything is touched, a ``ratio`` that ``layer_floor`` makes unreachable."""
    removable = sum(n - n_protected(n, layer_floor) for n in sizes)
    if round(ratio * sum(sizes)) > removable:
        raise ValueError(
            f"ratio={ratio} removes {round(ratio * sum(sizes))} weights, but keeping "
            f"layer_floor={layer_floor} of every layer leaves only {removable} removable. "
            "Lower layer_floor or the ratio."
        )


def select(scores, kept, ratio, scope="global", layer_floor=0.0, magnitudes=None):
    """Masks (True = kept) after removing up to ``ratio`` of the weights, for any scope.

    ``magnitudes`` (``|W|`` per layer) is needed by ``scope="magnitude_budget"`` only.
    """
    if scope == "magnitude_budget":
        budget = select_kept_weights(magnitudes, kept, ratio, "global", layer_floor)
        return select_within_budget(scores, kept, budget)
    return select_kept_weights(scores, kept, ratio, scope, layer_floor)


def select_kept_weights(
    scores: list[torch.Tensor],
    kept: list[torch.Tensor],
    ratio: float,
    scope: str = "global",
    layer_floor: float = 0.0,
) -> list[torch.Tensor]:
    """Masks keeping all but the ``round(ratio * n)`` least important weights.

    Weights already absent (``kept`` False) count towards the removed ones and are never
    brought back, so pruning again to a higher ratio removes only the difference. Ties are
    broken by position, so the count is exact. ``scope="global"`` ranks all layers together,
    ``"layer"`` removes ``round(ratio * n_l)`` from each layer. ``layer_floor`` (global
    scope) keeps at least that fraction of every layer: a global ranking can otherwise
    empty a layer whose scores are small in absolute terms, cutting the network in two.
    """
    if scope == "layer":
        return [select_kept_weights([s], [k], ratio, "global")[0] for s, k in zip(scores, kept)]
    if scope != "global":
        raise ValueError(f"Unknown scope {scope!r}; expected 'global' or 'layer' here.")
    ranked = [_removal_priority(s, k) for s, k in zip(scores, kept)]
    if layer_floor > 0:
        ranked = [_protect_layer_floor(r, k, layer_floor) for r, k in zip(ranked, kept)]
    n_absent = sum(int((~k).sum()) for k in kept)
    n_remove = max(int(round(ratio * sum(k.numel() for k in kept))), n_absent)
    return _remove_lowest(ranked, kept, n_remove, ratio, layer_floor)


def select_within_budget(
    scores: list[torch.Tensor], kept: list[torch.Tensor], budget: list[torch.Tensor]
) -> list[torch.Tensor]:
    """Keep as many weights in each layer as ``budget`` does, the best-scored ones.

    ``budget`` is a selection by another criterion (``scope="magnitude_budget"``: global
    magnitude pruning); it fixes how many weights each layer keeps, ``scores`` which.
    """
    masks = []
    for s, k, b in zip(scores, kept, budget):
        n_remove = k.numel() - int(b.sum())
        masks.append(_remove_lowest([_removal_priority(s, k)], [k], n_remove)[0])
    return masks


def _remove_lowest(ranked, kept, n_remove, ratio=None, layer_floor=0.0):
    """Masks without the ``n_remove`` lowest of ``ranked`` (all layers together)."""
    flat_scores = torch.cat([r.reshape(-1) for r in ranked])
    n_removable = int((flat_scores < torch.inf).sum())
    if n_remove > n_removable:
        raise ValueError(
            f"Cannot remove {n_remove} weights (ratio={ratio}) while keeping layer_floor="
            f"{layer_floor} of every layer: at most {n_removable} can go. Lower layer_floor "
            "or the ratio."
        )
    order = torch.argsort(flat_scores, stable=True)
    flat_keep = torch.ones(flat_scores.numel(), dtype=torch.bool)
    flat_keep[order[:n_remove]] = False
    masks, start = [], 0
    for k in kept:
        masks.append(flat_keep[start : start + k.numel()].view_as(k).to(k.device))
        start += k.numel()
    return masks


def _removal_priority(scores: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Scores on the CPU in float64, absent weights first (-inf)."""
    ranked = scores.detach().double().cpu().clone()
    ranked[~kept.cpu()] = -torch.inf
    return ranked


def _protect_layer_floor(ranked: torch.Tensor, kept: torch.Tensor, floor: float) -> torch.Tensor:
    """Mark (+inf) the best ``n_protected`` weights of a layer as never removable."""
    n_kept = min(n_protected(ranked.numel(), floor), int(kept.sum()))
    order = torch.argsort(ranked.reshape(-1), stable=True, descending=True)
    protected = ranked.clone().reshape(-1)
    protected[order[:n_kept]] = torch.inf
    return protected.view_as(ranked)
