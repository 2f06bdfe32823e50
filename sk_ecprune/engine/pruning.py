"""``prune_model``: score, select, mask and compensate, step after step.

Orchestration only: the scores come from :mod:`.scoring`, the choice from :mod:`.selection`,
the masks from :mod:`.masks`, the compensation from :mod:`.compensation`, the steps from
:mod:`.schedules` and the report from :mod:`.report`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._checks import check_choice, check_fraction, check_positive_int
from .compensation import add_bias_shift
from .masks import apply_mask, effective_weight, kept_mask
from .neurons import NEURON_SCORERS, hidden_layers, remove_units, score_neurons, select_units
from .recording import linear_layers, scoring_session
from .report import LayerReport, PruningReport
from .schedules import step_ratios
from .scoring import PROCEDURES, get_scorer, make_generator, score_weights
from .selection import SCOPES, check_reachable, select

__all__ = ["prune_model"]


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
    granularity: str = "weight",
    sample_weight=None,
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
        A key of :data:`SCORERS`.
    scope : {"global", "layer", "magnitude_budget"}, default="global"
        Rank all weights together, prune every layer by ``ratio``, or let global magnitude
        pruning decide how many weights each layer loses and ``method`` which ones.
    compensate : bool or None, default=None
        Add the method's bias shifts for removed weights. ``None`` compensates whenever the
        method returns shifts (as ``"ec"`` and ``"nonlinear"`` do) and every layer has a
        bias; True with a method that returns none is an error.
    steps : int, default=1
        Reach ``ratio`` in this many steps of a geometric schedule, re-scoring and
        re-compensating the pruned network at each step.
    layer_floor : float in [0, 1), default=0.0
        With a global scope, keep at least this fraction of every layer's weights.
    loss, batch_size, output_metric, random_state
        Passed to the scoring method; see :func:`score_weights`.
    check_finite : bool, default=True
        Check ``X`` for NaN and infinity (batch by batch, during the first scoring pass).
        False skips the check for data validated before, as the estimators' ``fit`` does.
    max_samples : int or None, default=None
        Estimate the scores' expectations on a random subset of this many rows (drawn once,
        from ``random_state``, and used by every step) instead of all of ``X``; None uses
        all rows. Scoring cost is proportional to the rows used. The subset keeps the
        weights of its rows.
    granularity : {"weight", "neuron"}, default="weight"
        Remove single weights, or whole hidden units (their incoming and outgoing weights,
        :mod:`.neurons`; a plain chain only, ``scope="global"``, methods of
        :data:`~.neurons.NEURON_SCORERS`). With ``"neuron"`` the ratio still counts weights
        and the achieved count is at or below ``round(ratio * n_weights)``;
        :func:`~.compaction.compact` then makes the network smaller.
    sample_weight : array-like or torch.Tensor of shape (n_samples,), default=None
        Weight of each row of ``X`` in the scores' expectations; see
        :func:`score_weights`. None weighs all rows equally.

    Returns
    -------
    report : PruningReport
    """

    start_time = time.perf_counter()
    plan = _Plan.checked(
        ratio, method, scope, compensate, steps, layer_floor, granularity,
        dict(method=method, loss=loss, batch_size=batch_size, output_metric=output_metric,
             random_state=random_state, check_finite=bool(check_finite)),
    )
    X, y, sample_weight = _subsample(X, y, sample_weight, max_samples, random_state)
    named = linear_layers(module)
    layers = [layer for _, layer in named]
    if plan.granularity == "weight":  # (a floor of units may leave the target unmet)
        check_reachable([layer.weight.numel() for layer in layers], plan.ratio, plan.floor)
    before = [kept_mask(layer) for layer in layers]
    run = _run_neuron_steps if plan.granularity == "neuron" else _run_steps
    shifts, changes, compensated, damping = run(module, layers, (X, y, sample_weight), plan,
                                                _sparsity(before))
    report = PruningReport(method, plan.ratio, scope, compensated, plan.steps,
                           granularity=plan.granularity)
    report.layers = [_layer_report(name, layer, kept, shift, change, added)
                     for (name, layer), kept, shift, change, added
                     in zip(named, before, shifts, changes, damping)]
    report.time_s = time.perf_counter() - start_time
    return report


@dataclass(frozen=True)
class _Plan:
    """The checked arguments of one :func:`prune_model` call."""

    ratio: float
    method: str
    scope: str
    compensate: bool | None
    steps: int
    layer_floor: float
    granularity: str
    score_options: dict

    @classmethod
    def checked(cls, ratio, method, scope, compensate, steps, layer_floor, granularity,
                score_options):
        check_choice("granularity", granularity, ("weight", "neuron"))
        if granularity == "neuron":
            check_choice("method", method, NEURON_SCORERS)
            if scope != "global":
                raise ValueError(f"granularity='neuron' ranks units globally; got scope={scope!r}"
                                 ", use scope='global'.")
        else:
            get_scorer(method)
        return cls(check_fraction("ratio", ratio), method, check_choice("scope", scope, SCOPES),
                   None if compensate is None else bool(compensate),
                   check_positive_int("steps", steps), check_fraction("layer_floor", layer_floor),
                   granularity, score_options)

    @property
    def floor(self) -> float:
        """The layer floor that applies: none with ``scope="layer"``."""
        return 0.0 if self.scope == "layer" else self.layer_floor


def _run_procedure_steps(module, layers, data, plan, start_sparsity):
    """Every step of the schedule through the method's own procedure (:data:`PROCEDURES`);
    returns the summed bias shift and weight change per layer, True (compensated) and the
    largest damping a factorisation had to add per layer."""
    if plan.compensate is False:
        raise ValueError(f"method={plan.method!r} compensates as it removes; "
                         "compensate=False is not available for it.")
    X, y, sample_weight = data
    options = plan.score_options
    shifts, changes = [None] * len(layers), [0.0] * len(layers)
    damping = [0.0] * len(layers)
    check_finite = options["check_finite"]
    for step_ratio in step_ratios(plan.ratio, plan.steps, min(start_sparsity, plan.ratio)):
        with scoring_session(module, X, y, options["batch_size"], check_finite,
                             sample_weight) as (_, scoring_data):
            result = PROCEDURES[plan.method](
                module, layers, scoring_data, ratio=step_ratio, scope=plan.scope,
                layer_floor=plan.floor, output_metric=options["output_metric"],
                generator=make_generator(options["random_state"]), loss=options["loss"])
        check_finite = False  # X passed the first step's check
        for index, change in enumerate(result):
            if change.bias_shift is not None:
                shift = change.bias_shift.detach().double()
                shifts[index] = shift if shifts[index] is None else shifts[index] + shift
            changes[index] += float(change.weight_change)
            damping[index] = max(damping[index], float(change.added_damping))
    return shifts, changes, True, damping


def _run_steps(module, layers, data, plan, start_sparsity):
    """Every step of the schedule on ``data = (X, y, sample_weight)``; returns the summed
    bias shift and weight change (none) per layer and whether the removals were
    compensated."""
    if plan.method in PROCEDURES:
        return _run_procedure_steps(module, layers, data, plan, start_sparsity)
    X, y, sample_weight = data
    shifts = [None] * len(layers)
    compensate = plan.compensate
    options = dict(plan.score_options, sample_weight=sample_weight)
    for step_ratio in step_ratios(plan.ratio, plan.steps, min(start_sparsity, plan.ratio)):
        importance = score_weights(module, X, y, **options)
        options["check_finite"] = False  # X passed the first step's check
        compensate = _decide_compensation(compensate, importance, layers, plan.method)
        kept = [kept_mask(layer) for layer in layers]
        magnitudes = None
        if plan.scope == "magnitude_budget":
            magnitudes = [effective_weight(layer).abs() for layer in layers]
        keep = select(importance.scores, kept, step_ratio, plan.scope, plan.floor, magnitudes)
        for index, layer in enumerate(layers):
            apply_mask(layer, keep[index])
            if compensate:
                shift = add_bias_shift(layer, importance.bias_shifts[index],
                                       kept[index] & ~keep[index])
                shifts[index] = shift if shifts[index] is None else shifts[index] + shift
    return shifts, [0.0] * len(layers), bool(compensate), [0.0] * len(layers)


def _run_neuron_steps(module, layers, data, plan, start_sparsity):
    """The schedule for ``granularity="neuron"``: whole units, compensated in the consumer."""
    X, _, sample_weight = data
    shifts = [None] * len(layers)
    damping = [0.0] * len(layers)
    compensate = plan.compensate
    options = plan.score_options
    n_weights = sum(layer.weight.numel() for layer in layers)
    check_finite = options["check_finite"]
    for step_ratio in step_ratios(plan.ratio, plan.steps, min(start_sparsity, plan.ratio)):
        importance = score_neurons(
            module, X, method=plan.method, batch_size=options["batch_size"],
            output_metric=options["output_metric"], random_state=options["random_state"],
            check_finite=check_finite, sample_weight=sample_weight,
        )
        check_finite = False  # X passed the first step's check
        compensate = _decide_compensation(compensate, importance, layers, plan.method)
        hidden = hidden_layers(module, layers)
        take = select_units(importance, hidden, layers, round(step_ratio * n_weights),
                            plan.layer_floor)
        for layer, shift in remove_units(hidden, take, importance, compensate).items():
            index = layers.index(layer)
            shifts[index] = shift if shifts[index] is None else shifts[index] + shift
        for h, metric in zip(hidden, importance.metrics or []):
            index = layers.index(h.consumer)
            damping[index] = max(damping[index], metric.relative_added_damping())
    return shifts, [0.0] * len(layers), bool(compensate), damping


def _decide_compensation(requested, importance, layers, method):
    """Compensate if asked, or (``None``) whenever the method returned bias shifts."""
    if requested is None:
        return importance.compensates and all(layer.bias is not None for layer in layers)
    if requested and not importance.compensates:
        raise ValueError(
            f"method={method!r} returns no bias shifts to compensate with; use "
            "compensate=None or False, or a compensating method such as 'ec'."
        )
    return requested


def _sparsity(masks) -> float:
    return 1 - sum(int(k.sum()) for k in masks) / sum(k.numel() for k in masks)


def _layer_report(name, layer, kept_before, shift, change=0.0, damping=0.0) -> LayerReport:
    kept_after = kept_mask(layer)
    return LayerReport(name, kept_after.numel(), int((~kept_after).sum()),
                       int((kept_before & ~kept_after).sum()),
                       None if shift is None else shift.detach().cpu().numpy(), float(change),
                       float(damping))


def _subsample(X, y, sample_weight, max_samples, random_state):
    """``max_samples`` rows of X (and of y and the weights) drawn without replacement, in
    their order; with weights, among the rows of positive weight (the others add nothing to
    an expectation, and a draw of only such rows would leave none to score on)."""
    if max_samples is None or len(X) <= max_samples:
        return X, y, sample_weight
    max_samples = check_positive_int("max_samples", max_samples)
    candidates = _positive_rows(sample_weight, len(X))
    if len(candidates) <= max_samples:
        rows = candidates
    else:
        draw = torch.randperm(len(candidates), generator=make_generator(random_state))
        rows = candidates[draw[:max_samples]].sort().values

    def take(data):
        if data is None:
            return None
        if isinstance(data, torch.Tensor):
            return data[rows.to(data.device)]
        return np.asarray(data)[rows.numpy()]

    return take(X), take(y), take(sample_weight)


def _positive_rows(sample_weight, n_samples):
    """Indices of the rows of positive weight (all rows without weights, or when the
    weights are malformed: the scoring session then says what is wrong with them)."""
    everything = torch.arange(n_samples)
    if sample_weight is None:
        return everything
    try:
        weights = torch.as_tensor(np.asarray(
            sample_weight.detach().cpu() if isinstance(sample_weight, torch.Tensor)
            else sample_weight, dtype=np.float64))
    except (TypeError, ValueError):
        return everything
    if weights.shape != (n_samples,) or not bool(torch.isfinite(weights).all()) or bool(
            (weights < 0).any()) or not bool((weights > 0).any()):
        return everything
    return torch.nonzero(weights > 0).squeeze(1)
