"""EC-OBS: elimination-compensation as an Optimal Brain Surgeon step of each unit.

EC moves only the bias of the unit that loses a weight. EC-OBS lets the unit's remaining
weights move too: removing ``w_ij`` costs ``B_i w_ij^2 / [K_i^-1]_jj`` instead of EC's
``B_i w_ij^2 [K_i]_jj`` (``K_i`` the unit's damped ``s_i``-weighted input covariance,
:mod:`.statistics`), and removing a set of a row's weights moves the kept ones to their
least-squares optimum (:mod:`.solvers`), the bias following in closed form. Which weights
go is planned across layers from the single costs and chosen per layer by a threshold
sweep (:mod:`.sweep`); layers are pruned from input to output (:mod:`.procedure`).

Two methods are registered: ``"ec_obs"`` (one shared Hessian per layer, sweep: the fast
default) and ``"ec_obs_exact"`` (one Hessian per unit, OBC's greedy sequences: the
reference, at ``out * in^3`` per layer). :func:`register_ec_obs` registers other variants.
"""

from __future__ import annotations

from functools import partial

from ...masks import effective_weight
from ..registry import Importance, register_scorer
from .procedure import SELECTIONS, layer_metrics, prune_layers
from .solvers import single_costs
from .statistics import HESSIANS
from .sweep import ORDERS

__all__ = ["HESSIANS", "ORDERS", "SELECTIONS", "register_ec_obs"]


def register_ec_obs(name: str, description: str, *, hessian="shared", selection="sweep",
                    order="auto", damp=0.01):
    """Register an EC-OBS variant as method ``name`` (scores and pruning procedure).

    Parameters
    ----------
    name : str
        The method's name in :data:`~sk_ecprune.engine.SCORERS`.
    description : str
        One line: how the method describes itself.
    hessian : {"shared", "exact"}, default="shared"
        One ``s``-weighted input covariance per layer, or one per unit.
    selection : {"sweep", "greedy", "oneshot"}, default="sweep"
        How a layer's removals are chosen, given how many it loses.
    order : {"auto", "row", "layer"}, default="auto"
        The sweep's column orders (:mod:`.sweep`).
    damp : float, default=0.01
        Damping, a multiple of the mean input variance added to the Hessian's diagonal.
    """
    if hessian not in HESSIANS or selection not in SELECTIONS or order not in ORDERS:
        raise ValueError(f"Unknown EC-OBS option: hessian={hessian!r}, selection="
                         f"{selection!r}, order={order!r}.")
    if not damp >= 0:
        raise ValueError(f"damp must be non-negative; got {damp!r}.")

    def importance(module, layers, data, *, output_metric="euclidean", **_) -> Importance:
        metrics = layer_metrics(module, layers, data, output_metric, hessian, damp)
        return Importance([single_costs(metric, effective_weight(layer))[0]
                           for metric, layer in zip(metrics, layers)])

    importance.__doc__ = description
    importance.__name__ = importance.__qualname__ = f"{name}_importance"
    procedure = partial(prune_layers, hessian=hessian, selection=selection, order=order,
                        damp=damp)
    return register_scorer(name, procedure=procedure)(importance)


register_ec_obs("ec_obs", "EC-OBS: the unit's bias and kept weights absorb each removal "
                "(one Hessian per layer).")
register_ec_obs("ec_obs_exact", "EC-OBS reference: one Hessian per unit, greedy removal "
                "sequences (cost grows as inputs cubed).", hessian="exact", selection="greedy")
