"""EC-OBS: elimination-compensation as an Optimal Brain Surgeon step of each unit.

EC moves only the bias of the unit that loses a weight. EC-OBS lets the unit's remaining
weights move too: removing ``w_ij`` costs ``B_i w_ij^2 / [K_i^-1]_jj`` instead of EC's
``B_i w_ij^2 [K_i]_jj`` (``K_i`` the unit's damped ``s_i``-weighted input covariance,
:mod:`.statistics`), and removing a set of a row's weights moves the kept ones to their
least-squares optimum (:mod:`.solvers`), the bias following in closed form. Which weights
go is planned across layers from the single costs and chosen per layer by a threshold
sweep (:mod:`.sweep`); layers are pruned from input to output (:mod:`.procedure`).

The method is :class:`ECOBS`, its options constructor arguments: ``"ec_obs"`` is
``ECOBS()`` (one shared Hessian per layer, sweep: the fast default) and ``"ec_obs_exact"``
is ``ECOBS(hessian="exact", selection="greedy")`` (one Hessian per unit, OBC's greedy
sequences: the reference, at ``out * in^3`` per layer). Any other variant is an instance,
passed as ``method=`` or registered under a name.
"""

from __future__ import annotations

from ...masks import effective_weight
from ...methods import register_method
from ..registry import Importance, WeightScorer
from .procedure import SELECTIONS, layer_metrics, plan_layers, prune_layer
from .solvers import single_costs
from .statistics import HESSIANS
from .sweep import ORDERS

__all__ = ["ECOBS", "HESSIANS", "ORDERS", "SELECTIONS", "register_ec_obs"]


@register_method("ec_obs")
class ECOBS(WeightScorer):
    """EC-OBS: the unit's bias and kept weights absorb each removal (one Hessian per layer).

    Parameters
    ----------
    hessian : {"shared", "exact"}, default="shared"
        One ``s``-weighted input covariance per layer, or one per unit.
    selection : {"sweep", "greedy", "oneshot"}, default="sweep"
        How a layer's removals are chosen, given how many it loses.
    order : {"auto", "row", "layer"}, default="auto"
        The sweep's column orders (:mod:`.sweep`).
    damp : float, default=0.01
        Damping, a multiple of the mean input variance added to the Hessian's diagonal.
    """

    def __init__(self, hessian="shared", selection="sweep", order="auto", damp=0.01):
        if hessian not in HESSIANS or selection not in SELECTIONS or order not in ORDERS:
            raise ValueError(f"Unknown EC-OBS option: hessian={hessian!r}, selection="
                             f"{selection!r}, order={order!r}; expected hessian in {HESSIANS},"
                             f" selection in {SELECTIONS}, order in {ORDERS}.")
        if not damp >= 0:
            raise ValueError(f"damp must be non-negative; got {damp!r}.")
        self.hessian, self.selection, self.order, self.damp = hessian, selection, order, damp

    def _options(self):
        return dict(hessian=self.hessian, selection=self.selection, order=self.order,
                    damp=self.damp)

    def importance(self, module, layers, data, *, output_metric="euclidean", **_) -> Importance:
        metrics = layer_metrics(module, layers, data, output_metric, self.hessian, self.damp)
        return Importance([single_costs(metric, effective_weight(layer))[0]
                           for metric, layer in zip(metrics, layers)])

    def plan(self, step):
        if step.compensate is False:
            raise ValueError(f"method={step.method_name!r} compensates as it removes; "
                             "compensate=False is not available for it.")
        return plan_layers(step.module, step.layers, step.data, ratio=step.target,
                           scope=step.scope, layer_floor=step.layer_floor,
                           output_metric=step.output_metric, **self._options())

    def change(self, step, plan, index):
        return prune_layer(step.module, step.layers, step.data, plan, index,
                           output_metric=step.output_metric, **self._options())


def register_ec_obs(name: str, description: str | None = None, **options) -> ECOBS:
    """Register ``ECOBS(**options)`` as method ``name`` (a shortcut for
    ``register_method(name, ECOBS(...))``; ``description`` is kept for compatibility)."""
    return register_method(name, ECOBS(**options))


register_ec_obs("ec_obs_exact", hessian="exact", selection="greedy")
