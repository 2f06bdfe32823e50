"""Removing weights: which to remove, masks, bias compensation, and the report.

Masks are PyTorch's own reparametrisation (``torch.nn.utils.prune``): the layer keeps
``weight_orig`` and a ``weight_mask`` buffer and applies their product, so training after
pruning cannot bring a removed weight back, and :func:`make_permanent` turns the result into
plain parameters with ``prune.remove``.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import prune

from ._layers import effective_weight, kept_mask, linear_layers
from .importance import check_method, compute_importance, make_generator

SCOPES = ("global", "layer", "magnitude_budget")


@dataclass
class LayerReport:
    """What pruning did to one ``nn.Linear`` layer.

    Attributes
    ----------
    name : str
        The layer's name in ``module.named_modules()``.
    n_weights : int
        Weights of the layer (biases never count).
    n_removed : int
        Weights absent after pruning, including those removed before this call.
    n_removed_now : int
        Weights removed by this call.
    bias_shift : torch.Tensor or None
        Total shift added to the layer's bias by this call (on the CPU, whatever the
        module's device, so that a report outlives its GPU), or ``None`` if not compensated.
    """

    name: str
    n_weights: int
    n_removed: int
    n_removed_now: int
    bias_shift: torch.Tensor | None = None

    @property
    def sparsity(self) -> float:
        return self.n_removed / self.n_weights


@dataclass
class PruningReport:
    """Result of :func:`prune_model`: what was removed, where, and how long it took."""

    method: str
    ratio: float
    scope: str
    compensated: bool
    steps: int
    layers: list[LayerReport] = field(default_factory=list)
    time_s: float = 0.0

    @property
    def n_weights(self) -> int:
        return sum(layer.n_weights for layer in self.layers)

    @property
    def n_removed(self) -> int:
        return sum(layer.n_removed for layer in self.layers)

    @property
    def n_removed_now(self) -> int:
        return sum(layer.n_removed_now for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Achieved fraction of removed weights over all layers."""
        return self.n_removed / self.n_weights

    def to_dict(self) -> dict:
        """Plain-Python summary (no tensors), e.g. for logging or a DataFrame."""
        return {
            "method": self.method,
            "ratio": self.ratio,
            "scope": self.scope,
            "compensated": self.compensated,
            "steps": self.steps,
            "n_weights": self.n_weights,
            "n_removed": self.n_removed,
            "sparsity": self.sparsity,
            "time_s": self.time_s,
            "layers": {
                layer.name: {
                    "n_weights": layer.n_weights,
                    "n_removed": layer.n_removed,
                    "sparsity": layer.sparsity,
                    "bias_shift_norm": None
                    if layer.bias_shift is None
                    else float(layer.bias_shift.norm()),
                }
                for layer in self.layers
            },
        }

    def __str__(self) -> str:
        lines = [
            f"{self.method} pruning to {self.ratio:.3g} ({self.scope}, {self.steps} step(s), "
            f"compensation {'on' if self.compensated else 'off'}): removed {self.n_removed} of "
            f"{self.n_weights} weights ({self.sparsity:.1%}) in {self.time_s:.2f} s"
        ]
        for layer in self.layers:
            lines.append(
                f"  {layer.name or '<module>'}: {layer.n_removed}/{layer.n_weights} "
                f"({layer.sparsity:.1%})"
            )
        return "\n".join(lines)


def _check_fraction(name, value) -> float:
    """``value`` as a float in [0, 1); any real number type (numpy scalars too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1); got {value!r}.")
    return float(value)


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
    """Mark (+inf) the best ``ceil(floor * n_l)`` weights of a layer as never removable."""
    n = ranked.numel()
    n_protected = min(math.ceil(floor * n - 1e-9), int(kept.sum()))
    order = torch.argsort(ranked.reshape(-1), stable=True, descending=True)
    protected = ranked.clone().reshape(-1)
    protected[order[:n_protected]] = torch.inf
    return protected.view_as(ranked)


def apply_mask(layer: nn.Linear, keep: torch.Tensor) -> None:
    """Mask ``layer.weight`` through ``torch.nn.utils.prune`` (combined with any earlier mask)."""
    prune.custom_from_mask(layer, "weight", mask=keep)


def add_bias_shift(layer: nn.Linear, shifts: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """Add to each bias the sum of the shifts of its unit's removed weights; return that sum.

    The jointly optimal shift for several removed weights of one unit is the sum of their
    individual shifts, since the linearised problem is linear in the shift.
    """
    total = (shifts * removed.to(shifts.dtype)).sum(1)
    if layer.bias is None:
        raise ValueError(
            f"{layer} has no bias to compensate with; pass compensate=False to prune it."
        )
    with torch.no_grad():
        layer.bias.add_(total.to(layer.bias.dtype))
    return total


def _prune_once(module, layers, X, y, ratio, scope, layer_floor, compensate, score_options):
    """One scoring pass and one masking step to ``ratio``; returns per-layer (removed, shift)."""
    importance = compute_importance(module, X, y, **score_options)
    kept = [kept_mask(layer) for layer in layers]
    if scope == "magnitude_budget":
        magnitudes = [effective_weight(layer).abs() for layer in layers]
        budget = select_kept_weights(magnitudes, kept, ratio, "global", layer_floor)
        keep = select_within_budget(importance.scores, kept, budget)
    else:
        keep = select_kept_weights(importance.scores, kept, ratio, scope, layer_floor)
    results = []
    for index, layer in enumerate(layers):
        removed_now = kept[index] & ~keep[index]
        apply_mask(layer, keep[index])
        shift = None
        if compensate:
            shift = add_bias_shift(layer, importance.bias_shifts[index], removed_now)
        results.append((int(removed_now.sum()), shift))
    return results


def _check_floor_allows_ratio(layers, ratio, layer_floor):
    """Refuse before touching the module if the floor makes ``ratio`` unreachable."""
    sizes = [layer.weight.numel() for layer in layers]
    removable = sum(n - math.ceil(layer_floor * n - 1e-9) for n in sizes)
    if round(ratio * sum(sizes)) > removable:
        raise ValueError(
            f"ratio={ratio} removes {round(ratio * sum(sizes))} weights, but keeping "
            f"layer_floor={layer_floor} of every layer leaves only {removable} removable. "
            "Lower layer_floor or the ratio."
        )


def _subsample(X, y, max_samples, random_state):
    """``max_samples`` rows of X (and y) drawn without replacement, in their order."""
    if max_samples is None or len(X) <= max_samples:
        return X, y
    if isinstance(max_samples, bool) or int(max_samples) < 1:
        raise ValueError(f"max_samples must be a positive integer or None; got {max_samples!r}.")
    rows = torch.randperm(len(X), generator=make_generator(random_state))[: int(max_samples)]
    rows = rows.sort().values
    take = lambda data: data[rows] if isinstance(data, torch.Tensor) else data[rows.numpy()]  # noqa: E731
    return take(X), None if y is None else take(y)


def step_ratios(ratio: float, steps: int, start: float = 0.0) -> list[float]:
    """Ratios after each step of a geometric schedule from sparsity ``start`` to ``ratio``.

    The kept fraction shrinks by the same factor at every step, so each step removes the
    same share of what is left: kept after step t = (1-start) * ((1-ratio)/(1-start))^(t/steps).
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be a positive integer; got {steps!r}.")
    kept_start, kept_end = 1.0 - start, 1.0 - ratio
    return [
        1.0 - kept_start * (kept_end / kept_start) ** (t / steps) for t in range(1, steps + 1)
    ][:-1] + [ratio]


def prune_model(
    module: nn.Module,
    X,
    y=None,
    *,
    ratio: float,
    method: str = "ec",
    scope: str = "global",
    compensate: bool | None = None,
    steps: int = 1,
    layer_floor: float = 0.0,
    loss=None,
    batch_size: int = 1024,
    output_metric: str = "euclidean",
    random_state=None,
    check_finite: bool = True,
    max_samples: int | None = None,
) -> PruningReport:
    """Score, remove and compensate the weights of ``module`` in place.

    Parameters
    ----------
    module : torch.nn.Module
        Any module whose ``nn.Linear`` layers are each applied once per sample. Its weights
        are masked through ``torch.nn.utils.prune``; see :func:`make_permanent`.
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Data for the scores' expectations. Never modified.
    y : array-like or torch.Tensor, default=None
        Targets, for methods that need the loss (``"gradient_magnitude"``).
    ratio : float in [0, 1)
        Fraction of all weights (biases excluded) absent after pruning, counting those
        already removed. Exactly ``round(ratio * n_weights)`` are absent afterwards (or
        ``round(ratio * n_l)`` per layer with ``scope="layer"``).
    method : str, default="ec"
        A key of :data:`sk_ecprune.SCORERS`.
    scope : {"global", "layer", "magnitude_budget"}, default="global"
        Rank all weights together, prune every layer by ``ratio``, or let global magnitude
        pruning decide how many weights each layer loses and ``method`` which ones.
    compensate : bool or None, default=None
        Add the method's bias shifts for removed weights. ``None`` compensates whenever the
        method has shifts (``"ec"``, ``"nonlinear"``).
    steps : int, default=1
        Reach ``ratio`` in this many steps of a geometric schedule, re-scoring and
        re-compensating the pruned network at each step.
    layer_floor : float in [0, 1), default=0.0
        With a global scope, keep at least this fraction of every layer's weights.
    loss, batch_size, output_metric, random_state
        Passed to the scoring method; see :func:`sk_ecprune.score_weights`.
    check_finite : bool, default=True
        Check ``X`` for NaN and infinity (batch by batch, during the first scoring pass).
        False skips the check for data validated before, as the estimators' ``fit`` does.
    max_samples : int or None, default=None
        Estimate the scores' expectations on a random subset of this many rows (drawn once,
        from ``random_state``, and used by every step) instead of all of ``X``; None uses
        all rows. Scoring cost is proportional to the rows used.

    Returns
    -------
    report : PruningReport
    """
    start_time = time.perf_counter()
    ratio = _check_fraction("ratio", ratio)
    check_method(method)
    if scope not in SCOPES:
        raise ValueError(f"Unknown scope {scope!r}; expected one of {SCOPES}.")
    layer_floor = _check_fraction("layer_floor", layer_floor)
    X, y = _subsample(X, y, max_samples, random_state)
    named = linear_layers(module)
    layers = [layer for _, layer in named]
    _check_floor_allows_ratio(layers, ratio, 0.0 if scope == "layer" else layer_floor)
    has_shifts = method in ("ec", "nonlinear")
    if compensate is None:
        compensate = has_shifts and all(layer.bias is not None for layer in layers)
    elif compensate and not has_shifts:
        raise ValueError(
            f"method={method!r} has no bias compensation; use compensate=None or False, "
            "or a compensating method ('ec', 'nonlinear')."
        )
    score_options = dict(
        method=method,
        loss=loss,
        batch_size=batch_size,
        output_metric=output_metric,
        random_state=random_state,
        check_finite=bool(check_finite),
    )
    before = [kept_mask(layer) for layer in layers]
    start_sparsity = 1 - sum(int(k.sum()) for k in before) / sum(k.numel() for k in before)
    shifts = [None] * len(layers)
    for step_ratio in step_ratios(ratio, steps, min(start_sparsity, ratio)):
        for index, (_, shift) in enumerate(
            _prune_once(
                module, layers, X, y, step_ratio, scope, layer_floor, compensate, score_options
            )
        ):
            if shift is not None:
                shifts[index] = shift if shifts[index] is None else shifts[index] + shift
        score_options["check_finite"] = False  # X passed the first step's check
    report = PruningReport(method, ratio, scope, bool(compensate), int(steps))
    for (name, layer), kept_before, shift in zip(named, before, shifts):
        kept_after = kept_mask(layer)
        report.layers.append(
            LayerReport(
                name,
                kept_after.numel(),
                int((~kept_after).sum()),
                int((kept_before & ~kept_after).sum()),
                None if shift is None else shift.detach().cpu(),
            )
        )
    report.time_s = time.perf_counter() - start_time
    return report


def chain_reports(reports: list[PruningReport]) -> PruningReport:
    """One report for consecutive :func:`prune_model` calls on one module (gradual pruning).

    Ratio, removed counts and sparsity are the last call's; weights removed and bias shifts
    added are summed over the calls; ``steps`` counts the scoring passes of all of them.
    """
    if not reports:
        raise ValueError("chain_reports needs at least one report.")
    last = reports[-1]
    chained = PruningReport(
        last.method,
        last.ratio,
        last.scope,
        last.compensated,
        sum(report.steps for report in reports),
        time_s=sum(report.time_s for report in reports),
    )
    for per_call in zip(*(report.layers for report in reports)):
        shifts = [layer.bias_shift for layer in per_call if layer.bias_shift is not None]
        chained.layers.append(
            LayerReport(
                per_call[-1].name,
                per_call[-1].n_weights,
                per_call[-1].n_removed,
                sum(layer.n_removed_now for layer in per_call),
                torch.stack(shifts).sum(0) if shifts else None,
            )
        )
    return chained


def kept_masks(module: nn.Module) -> dict[str, torch.Tensor]:
    """Boolean mask of the weights still present in each ``nn.Linear`` layer, by name.

    Masked (``torch.nn.utils.prune``) and permanent zeros both count as removed. With
    :func:`make_permanent`, these masks let a training loop hold removed weights at zero on
    plain parameters (multiply after each optimizer step) instead of through the
    reparametrisation.
    """
    return {name: kept_mask(layer) for name, layer in linear_layers(module)}


def make_permanent(module: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight: plain parameters, zeros where removed.

    The result has no pruning hooks or buffers, so it pickles, deep-copies and loads into an
    unpruned module of the same architecture. Returns ``module`` for chaining.
    """
    for _, layer in linear_layers(module):
        if prune.is_pruned(layer):
            prune.remove(layer, "weight")
    return module


def layer_sparsity(module: nn.Module) -> dict[str, float]:
    """Fraction of zero weights in each ``nn.Linear`` layer, by layer name."""
    return {
        name: float((effective_weight(layer) == 0).double().mean())
        for name, layer in linear_layers(module)
    }
