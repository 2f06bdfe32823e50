"""EC-OBS pruning of a module: plan per layer, then prune layer after layer, input first.

1. Planning (:func:`plan_layers`): one pass measures every layer's :class:`~.statistics.RowMetric`; the weights'
   single-removal costs (comparable across layers: all are expected squared output
   changes) go through the engine's selection (:func:`~sk_ecprune.engine.selection.select`,
   every scope and layer floor), which fixes how many weights each layer loses.
2. Execution (:func:`prune_layer`, called by the engine's loop for each layer in turn), from
   the input layer to the output layer: the layer's statistics are
   measured again on the network as the earlier layers left it (so that each layer
   compensates for what the earlier ones lost), the layer's removals are chosen
   (``selection=``: the threshold sweep, OBC's greedy sequences, or the single costs once),
   and every row gets the joint optimum of its kept weights and bias for its mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...masks import apply_mask, effective_weight, kept_mask, set_parameters
from ...selection import n_protected, select
from ...sensitivities import recorded_sensitivities
from ..registry import LayerChange
from .solvers import greedy_sequences, joint_update, single_costs
from .statistics import RowMetric, UnitStatistics, row_metric
from .sweep import (SweepPlan, decoupled_costs, search_threshold, sweep, sweep_counts,
                    sweep_plan)

__all__ = ["SELECTIONS", "LayerPlan", "layer_metrics", "plan_layers", "prune_layer",
           "write_joint_update"]

SELECTIONS = ("sweep", "greedy", "oneshot")
F64 = torch.float64


def layer_metrics(module, layers, data, output_metric="euclidean", hessian="shared",
                  damp=0.01, only=None) -> list[RowMetric | None]:
    """Measure the :class:`RowMetric` of every layer (or of the indices in ``only``)."""
    wanted = range(len(layers)) if only is None else only
    stats = {index: UnitStatistics(hessian) for index in wanted}
    # the chain of sensitivities is carried down only to the lowest layer measured
    for inputs, sensitivities, w in recorded_sensitivities(module, layers, data, output_metric,
                                                           lowest=min(wanted, default=0)):
        for index, stat in stats.items():
            stat.update(sensitivities[index], inputs[index], w)
    return [None if index not in stats
            else row_metric(stats[index], damp, free_bias=layers[index].bias is not None)
            for index in range(len(layers))]


@dataclass
class LayerPlan:
    """EC-OBS's plan of one step: each layer's weights before, removals so far, selector
    and count of weights removed after the step."""

    weights: list
    forced: list
    selectors: list
    counts: list


def plan_layers(module, layers, data, *, ratio, scope="global", layer_floor=0.0,
                output_metric="euclidean", hessian="shared", selection="sweep",
                order="auto", damp=0.01) -> LayerPlan:
    """Measure every layer and plan how many weights each loses (see the module docstring)."""
    metrics = layer_metrics(module, layers, data, output_metric, hessian, damp)
    weights = [effective_weight(layer).double() for layer in layers]
    forced = [~kept_mask(layer) for layer in layers]
    selectors = [_LayerSelector(metric, W, f, selection, order)
                 for metric, W, f in zip(metrics, weights, forced)]
    return LayerPlan(weights, forced, selectors, _plan(selectors, ratio, scope, layer_floor))


def prune_layer(module, layers, data, plan: LayerPlan, index, *, output_metric="euclidean",
                hessian="shared", selection="sweep", order="auto", damp=0.01) -> LayerChange:
    """Prune ``layers[index]`` to its planned count, measured again after the earlier layers'
    updates; returns what its kept weights and bias did."""
    selector = plan.selectors[index]
    if plan.counts[index] <= int(plan.forced[index].sum()):
        return _keep_layer(layers[index], selector.metric, plan.forced[index])
    if index > 0:  # measured again, after the earlier layers' updates
        metric = layer_metrics(module, layers, data, output_metric, hessian, damp,
                               only=[index])[index]
        selector = _LayerSelector(metric, plan.weights[index], plan.forced[index], selection,
                                  order)
    removed = selector.choose(plan.counts[index])
    return _update_layer(layers[index], selector.metric, plan.weights[index], removed)


class _LayerSelector:
    """One layer's removals at a threshold: how many (:meth:`counts`), which (:meth:`choose`).

    A threshold ``tau`` on the cost of each removal *as the selection makes it* (the
    sweep's sequential costs, the greedy sequences' running maxima, or the single costs)
    makes the layers comparable, so that one threshold plans them all.
    """

    def __init__(self, metric, W, forced, selection, order):
        self.metric, self.W, self.forced, self.selection = metric, W, forced, selection
        self.singles = torch.where(forced, -1.0, single_costs(metric, W)[0])
        self.steps = self.priority = self.plan = None
        self.known = {}  # threshold -> count, shared by the planning and the choice
        self.spans = []  # (low, high, rest, lead): removals after the lead, tau in [low, high)
        self._lead = None  # the decoupled lead's costs and forced entries
        self._smallest = None  # the smallest positive single cost
        if selection == "greedy":
            self.steps, increments = greedy_sequences(metric, W, forced)
            # running maxima: nondecreasing per row, so the lowest of a layer are prefixes
            self.priority = torch.cummax(increments, 1).values
        elif selection == "sweep":
            self.plan = sweep_plan(metric, self.singles.clamp_min(0), order)

    def unknown(self, taus):
        """The thresholds of ``taus`` whose count neither ``known`` nor a span gives (those
        a span gives are added to ``known``)."""
        new = []
        for tau in taus:
            if tau in self.known:
                continue
            span = next((sp for sp in self.spans if sp[0] <= tau < sp[1]), None)
            if span is None:
                new.append(tau)
            else:
                self.known[tau] = int(span[2]) + self._lead_count(tau, span[3])
        return new

    def _lead_count(self, tau, lead):
        """Removals in the first ``lead`` columns (decoupled) at ``tau``: as the sweep
        decides them."""
        if self._lead is None:
            p = self.plan.decoupled
            self._lead = (decoupled_costs(self.plan, self.W, self.metric.beta),
                          self.plan.to_sweep(self.forced)[:, :p])
        costs, forced = self._lead
        return int(((costs[:, :lead] <= tau) | forced[:, :lead]).sum())

    def learn(self, taus, counts, spans=(), lead=None):
        """Add counts, and spans whose rest is outside the first ``lead`` columns (the
        plan's decoupled lead unless a group sweep shared a shorter one)."""
        self.known.update(zip(taus, counts))
        lead = self.plan.decoupled if lead is None else lead
        self.spans += [(low, high, rest, lead) for low, high, rest in spans]

    def wants_spans(self, taus):
        """Whether spans are worth their cost (about a sixth of a sweep): with a decoupled
        lead, or for thresholds below every positive single cost (a search started at
        zero widens through many thresholds that decide alike)."""
        if self.plan.decoupled:
            return True
        if self._smallest is None:
            positive = self.singles[self.singles > 0]
            self._smallest = float(positive.min()) if positive.numel() else 0.0
        return min(taus) < self._smallest

    def counts(self, taus):
        new = self.unknown(taus) if self.selection == "sweep" else [
            tau for tau in taus if tau not in self.known]
        if self.selection == "sweep" and new:
            spans = self.wants_spans(new)
            found = sweep_counts(self.plan, self.W, self.metric.beta, new, self.forced,
                                 spans=spans)
            self.learn(new, *(found if spans else (found,)))
        elif new:
            values = self.singles if self.priority is None else self.priority
            self.known.update((tau, int((values <= tau).sum())) for tau in new)
        return [self.known[tau] for tau in taus]

    def choose(self, n_removed):
        """Mask (True = removed) of exactly ``n_removed`` entries, the forced ones among them."""
        if n_removed <= int(self.forced.sum()):
            return self.forced.clone()
        if self.selection == "greedy":
            return _prefixes(self.steps, _lowest(self.priority, n_removed))
        if self.selection == "oneshot":
            return _lowest(self.singles, n_removed)
        tau0 = float(self.singles.reshape(-1).kthvalue(n_removed).values)
        _, tau = search_threshold(self.counts, n_removed, tau0, known=self.known,
                                  tolerance=max(1, n_removed // 100))
        plan = self.plan
        removed, _ = sweep(plan.U, plan.fid, plan.to_sweep(self.W), self.metric.beta, tau,
                           plan.to_sweep(self.forced), cap=n_removed, decoupled=plan.decoupled)
        return plan.from_sweep(removed)


def _plan(selectors, ratio, scope, layer_floor):
    """How many weights each layer has removed after the step (absent ones included)."""
    kept = [~s.forced for s in selectors]
    if scope != "global":  # fixed per layer, or by magnitude
        masks = select([s.singles for s in selectors], kept, ratio, scope, layer_floor,
                       magnitudes=[s.W.abs() for s in selectors])
        return [int((~mask).sum()) for mask in masks]
    sizes = [k.numel() for k in kept]
    absent = [int(s.forced.sum()) for s in selectors]
    caps = [max(n - n_protected(n, layer_floor), a) for n, a in zip(sizes, absent)]
    target = max(round(ratio * sum(sizes)), sum(absent))
    per_layer = {-1.0: absent}

    def totals(taus):
        _count_together(selectors, taus)
        rows = [s.counts(taus) for s in selectors]
        for k, tau in enumerate(taus):
            per_layer[tau] = [min(r[k], cap) for r, cap in zip(rows, caps)]
        return [sum(per_layer[tau]) for tau in taus]

    singles = torch.cat([s.singles.reshape(-1).cpu() for s in selectors])
    tau0 = float(singles.kthvalue(max(1, min(target, singles.numel()))).values)
    lo, hi = search_threshold(totals, target, tau0, tolerance=max(1, target // 100))
    low, high = per_layer.get(lo, absent), per_layer[hi]
    fraction = (target - sum(low)) / max(1, sum(high) - sum(low))
    counts = [a + int(round(fraction * (b - a))) for a, b in zip(low, high)]
    for index in sorted(range(len(counts)), key=lambda i: -sizes[i]):  # exact total
        difference = target - sum(counts)
        counts[index] = min(max(counts[index] + difference, absent[index]), caps[index])
    return counts


def _count_together(selectors, taus):
    """Count ``taus`` in one sweep for every group of sweep layers with one factor per row
    and equal widths (their rows are independent given a threshold), so that the planning
    pays each column's per-step overhead once per group instead of once per layer. The
    group sweeps the thresholds any of its layers lacks; each layer learns the counts it
    lacked (the others it has, from a span) in its ``known`` (its own counts unchanged)."""
    groups = {}
    for s in selectors:
        if s.selection != "sweep":
            continue
        new = s.unknown(taus)
        if new and s.plan.U.shape[0] == s.W.shape[0] > 1:
            groups.setdefault((s.W.shape[1], s.W.device), []).append((s, new))
    for members in groups.values():
        if len(members) < 2:
            continue
        wanted = set().union(*(new for _, new in members))
        union = [tau for tau in dict.fromkeys(taus) if tau in wanted]
        group = [s for s, _ in members]
        offsets = torch.tensor([0] + [s.W.shape[0] for s in group[:-1]]).cumsum(0)
        plan = SweepPlan(torch.cat([s.plan.U for s in group]),
                         torch.cat([s.plan.fid + o for s, o in zip(group, offsets.tolist())]),
                         torch.cat([s.plan.perm for s in group]),
                         min(s.plan.decoupled for s in group))
        spans = any(s.wants_spans(union) for s in group)
        found = sweep_counts(plan, torch.cat([s.W for s in group]),
                             torch.cat([s.metric.beta for s in group]), union,
                             torch.cat([s.forced for s in group]),
                             sizes=[s.W.shape[0] for s in group], spans=spans)
        counts, intervals = found if spans else (found, None)
        for index, (s, new) in enumerate(members):  # each learns the counts it lacked
            mine = [k for k, tau in enumerate(union) if tau in set(new)]
            s.learn([union[k] for k in mine], [counts[k][index] for k in mine],
                    [row[index] for row in intervals] if spans else (), plan.decoupled)


def _lowest(priority, n):
    """Boolean mask of the ``n`` lowest entries (ties by position)."""
    flat = torch.argsort(priority.reshape(-1).cpu(), stable=True)[:n]
    mask = torch.zeros(priority.numel(), dtype=torch.bool)
    mask[flat] = True
    return mask.view_as(priority).to(priority.device)


def _prefixes(steps, chosen):
    """Mask of the entries ``steps[i, :k_i]``, ``k_i`` the number chosen in row ``i``."""
    lengths = chosen.sum(1, keepdim=True)
    take = torch.arange(steps.shape[1], device=steps.device).unsqueeze(0) < lengths
    mask = torch.zeros_like(chosen)
    return mask.scatter_(1, steps, take)


def _update_layer(layer, metric, W0, removed) -> LayerChange:
    """Write the joint optimum for ``removed`` into ``layer`` and mask the removed weights."""
    change = write_joint_update(layer, metric, W0, removed)
    apply_mask(layer, ~removed)
    change.compensated = True
    return change


def _keep_layer(layer, metric, removed) -> LayerChange:
    """A layer that loses nothing new: its weights and bias stay as they are (the joint
    optimum of a row whose removed weights are already zero is the row itself), so it is
    not measured again; its mask is applied as for any other layer."""
    apply_mask(layer, ~removed)
    shift = None if layer.bias is None else torch.zeros(layer.out_features, dtype=F64,
                                                        device=removed.device)
    return LayerChange(shift, 0.0, metric.relative_added_damping(), compensated=True)


def write_joint_update(layer, metric, W0, removed) -> LayerChange:
    """Write into ``layer`` (weights ``W0`` before) the joint optimum of every row's kept
    weights for its mask ``removed`` (:func:`~.solvers.joint_update`), removed weights at
    zero, and the bias change that follows (none without a bias); returns both changes."""
    x, _ = joint_update(metric, W0, removed)
    new_weight = torch.where(removed, 0.0, x)
    delta = new_weight - W0
    shift = None
    if layer.bias is not None:
        shift = torch.where(metric.beta > 0, -(metric.zmean * delta).sum(1), 0.0)
    bias = None if shift is None else layer.bias.detach().double() + shift
    set_parameters(layer, new_weight, bias)
    return LayerChange(shift, float(torch.where(removed, 0.0, delta).norm()),
                       metric.relative_added_damping())
