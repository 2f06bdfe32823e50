"""``prune_model``: remove weights or units with any method, step after step.

Orchestration only: the method comes from the registry (:mod:`.methods`; weight methods in
:mod:`.scoring`, unit methods in :mod:`.neurons`) and runs through the engine's one loop,
:func:`~.methods.run_steps`; the steps come from :mod:`.schedules` and the report from
:mod:`.report`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from . import neurons, scoring  # noqa: F401  (register the built-in methods)
from ._checks import check_choice, check_fraction, check_positive_int
from .masks import kept_mask
from .methods import Method, make_generator, resolve_method, run_steps
from .recording import linear_layers
from .report import LayerReport, PruningReport
from .schedules import step_ratios
from .selection import SCOPES, check_reachable
from .sensitivities import METRICS

__all__ = ["prune_model"]


def prune_model(
    module: nn.Module,
    X,
    y=None,
    *,
    ratio: float,
    method: str | Method = "ec",
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
    method : str or Method, default="ec"
        A key of :data:`SCORERS` (``granularity="weight"``) or of :data:`NEURON_SCORERS`
        (``"neuron"``), or a method instance of that kind (its options set), e.g.
        ``ECOBS(damp=0.1)``.
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
        :data:`~.neurons.NEURON_SCORERS` or of kind ``"neuron"``). With ``"neuron"`` the ratio still counts weights
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
    plan = _Plan.checked(ratio, method, scope, compensate, steps, layer_floor, granularity,
                         output_metric)
    X, y, sample_weight = subsample(X, y, sample_weight, max_samples, random_state)
    named = linear_layers(module)
    layers = [layer for _, layer in named]
    if plan.granularity == "weight":  # (a floor of units may leave the target unmet)
        check_reachable([layer.weight.numel() for layer in layers], plan.ratio, plan.floor)
    before = [kept_mask(layer) for layer in layers]
    targets = step_ratios(plan.ratio, plan.steps, min(_sparsity(before), plan.ratio))
    totals = run_steps(plan.method, module, targets, (X, y, sample_weight),
                       method_name=plan.name, batch_size=batch_size,
                       check_finite=bool(check_finite), random_state=random_state,
                       scope=plan.scope, layer_floor=plan.floor, compensate=plan.compensate,
                       output_metric=output_metric, loss=loss)
    report = PruningReport(plan.name, plan.ratio, scope, any(t.compensated for t in totals),
                           plan.steps, granularity=plan.granularity)
    report.layers = [_layer_report(name, layer, kept, total.bias_shift, total.weight_change,
                                   total.added_damping)
                     for (name, layer), kept, total in zip(named, before, totals)]
    report.time_s = time.perf_counter() - start_time
    return report


@dataclass(frozen=True)
class _Plan:
    """The checked arguments of one :func:`prune_model` call."""

    ratio: float
    method: Method
    name: str
    scope: str
    compensate: bool | None
    steps: int
    layer_floor: float
    granularity: str

    @classmethod
    def checked(cls, ratio, method, scope, compensate, steps, layer_floor, granularity,
                output_metric):
        check_choice("granularity", granularity, ("weight", "neuron"))
        instance, name = resolve_method(method, granularity)
        if granularity == "neuron" and scope != "global":
            raise ValueError(f"granularity='neuron' ranks units globally; got scope={scope!r}"
                             ", use scope='global'.")
        check_choice("output_metric", output_metric, METRICS)
        return cls(check_fraction("ratio", ratio), instance, name,
                   check_choice("scope", scope, SCOPES),
                   None if compensate is None else bool(compensate),
                   check_positive_int("steps", steps), check_fraction("layer_floor", layer_floor),
                   granularity)

    @property
    def floor(self) -> float:
        """The layer floor that applies: none with ``scope="layer"``."""
        return 0.0 if self.scope == "layer" else self.layer_floor


def _sparsity(masks) -> float:
    return 1 - sum(int(k.sum()) for k in masks) / sum(k.numel() for k in masks)


def _layer_report(name, layer, kept_before, shift, change=0.0, damping=0.0) -> LayerReport:
    kept_after = kept_mask(layer)
    return LayerReport(name, kept_after.numel(), int((~kept_after).sum()),
                       int((kept_before & ~kept_after).sum()),
                       None if shift is None else shift.detach().cpu().numpy(), float(change),
                       float(damping))


def subsample(X, y, sample_weight, max_samples, random_state):
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
