"""Torch-Pruning as a structured-pruning baseline, at a given count of removed weights.

`Torch-Pruning <https://github.com/VainF/Torch-Pruning>`_ (``tp``) removes whole hidden
units of the MLP (rows of a hidden ``nn.Linear`` and the matching columns of its consumer)
and ranks them with ``tp.importance.GroupMagnitudeImportance(p=2)`` or
``GroupTaylorImportance``. Its ``pruning_ratio`` is a fraction of *channels* (hidden units),
whereas the benchmark compares methods at equal *weight* count: ``ratio`` is the fraction of
all ``nn.Linear`` weights (biases excluded) removed. :func:`torch_pruning_prune` therefore
searches the channel ratio whose result removes the most weights while staying at or below
``round(ratio * n_weights)``, the rule of the package's own neuron pruning.

The channel ratios that can give different networks are finite: with local pruning a
layer of width ``h`` keeps ``int(h * (1 - pruning_ratio))`` units, with global pruning
``k = n_hidden - int(n_hidden * (1 - pruning_ratio))`` units go in all. One candidate ratio
is taken inside each interval on which Torch-Pruning's result is constant (so no rounding
of ``1 - pruning_ratio`` can move it across a step) and the search runs over the candidates:
a bisection where the removed count grows with the candidate (local pruning, or one global
step), a full scan otherwise (global pruning in several steps, where it need not).

Torch-Pruning does not empty a layer: it silently skips a group whose pruning would remove
all its channels, so that layer stays *whole*, and ``max_pruning_ratio`` is not applied to
the global threshold within one step. Every hidden layer keeps at least one unit here
instead: the local candidates stop at ``1 - 1 / min(width)``, and for global pruning the
best-scored unit of each layer gets an infinite score (which changes nothing wherever
Torch-Pruning would not have skipped a layer) and at most ``n_hidden - n_layers`` go.
"""

from __future__ import annotations

import copy
import math
from fractions import Fraction
from itertools import pairwise

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

__all__ = ["IMPORTANCES", "n_weights", "torch_pruning_prune"]

#: Name -> factory of the Torch-Pruning importance (Torch-Pruning's default options).
IMPORTANCES = {
    "magnitude": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "taylor": tp.importance.GroupTaylorImportance,
    "random": tp.importance.RandomImportance,
}


def torch_pruning_prune(module, X, y, loss_fn, ratio, importance="magnitude",
                        global_pruning=True, iterative_steps=1, seed=0):
    """Remove hidden units of ``module`` with Torch-Pruning, at a target weight count.

    Parameters
    ----------
    module : torch.nn.Module
        The trained dense network on the CPU, e.g. an ``sk_ecprune`` ``MLP``: a chain of
        ``nn.Linear`` layers with element-wise activations (``nn.PReLU`` with one shared
        slope is left as it is). It is **not modified**: the units go from a deep copy.
    X, y : torch.Tensor or array-like
        Data for the Taylor importance's gradients (``loss_fn(module(X), y)`` on all of it,
        before each pruning step) and, ``X[:1]``, Torch-Pruning's graph tracing. ``X`` is
        cast to the module's dtype, ``y`` converted with ``torch.as_tensor`` as it is.
    loss_fn : callable
        ``loss_fn(output, y) -> scalar tensor``; used by ``importance="taylor"`` only.
    ratio : float
        Fraction of all ``nn.Linear`` weights (biases excluded) to remove, in ``[0, 1)``.
    importance : {"magnitude", "taylor", "random"}, default="magnitude"
        ``GroupMagnitudeImportance(p=2)``, ``GroupTaylorImportance()`` or
        ``RandomImportance()`` (a sanity baseline drawn from ``seed``).
    global_pruning : bool, default=True
        Rank the units of all hidden layers together (Torch-Pruning's ``global_pruning``)
        instead of removing the same fraction of units from each layer.
    iterative_steps : int, default=1
        Torch-Pruning's ``iterative_steps``: the channel ratio is reached in that many
        steps (linear schedule), with the Taylor gradients recomputed before each.
    seed : int, default=0
        Seed of torch's generator, forked for each trial; only ``"random"`` draws numbers.

    Returns
    -------
    result : dict
        ``module`` (the pruned copy: same class, plain ``nn.Linear`` layers of the smaller
        sizes, no gradients), ``pruning_ratio`` (the channel ratio passed to Torch-Pruning),
        ``n_weights`` (weights kept), ``n_weights_dense``, ``n_removed``, ``n_target``
        (``round(ratio * n_weights_dense)``), ``hidden_layer_sizes``, ``next_removed``
        (weights removed by the next candidate ratio, above ``n_target``; None when there
        is none) and ``n_trials`` (pruning runs made by the search).

    Notes
    -----
    ``n_removed <= n_target`` always. With ``iterative_steps=1``, or local pruning,
    ``n_target - n_removed < next_removed - n_removed``: the next candidate removes one
    more unit (global pruning, barring exactly tied scores) or one more unit of each layer
    whose step falls there (local pruning), so ``n_target - n_removed`` is below the
    weights of one unit of the dense network, ``max_l (h_{l-1} + h_{l+1})``, for global
    pruning, and below ``sum_l (h_{l-1} + h_{l+1})`` for local pruning.
    """
    _check_arguments(module, ratio, importance, iterative_steps)
    X, y = _as_tensors(module, X, y)
    dense = n_weights(module)
    n_target = round(ratio * dense)
    widths = [layer.out_features for layer in _linears(module)[:-1]]
    candidates = _candidate_ratios(widths, global_pruning)

    trials = []

    def trial(channel_ratio):
        trials.append(channel_ratio)
        pruned = _prune_copy(module, X, y, loss_fn, channel_ratio, importance,
                             global_pruning, iterative_steps, seed)
        return dense - n_weights(pruned), pruned

    if global_pruning and iterative_steps > 1:
        best, following, results = _scan(trial, candidates, n_target)
    else:
        best, following, results = _bisect(trial, candidates, n_target)
    removed, pruned = results[best]
    return dict(module=pruned, pruning_ratio=candidates[best], n_weights=dense - removed,
                n_weights_dense=dense, n_removed=removed, n_target=n_target,
                hidden_layer_sizes=tuple(m.out_features for m in _linears(pruned)[:-1]),
                next_removed=None if following is None else results[following][0],
                n_trials=len(trials))


def n_weights(module):
    """Number of weights (biases excluded) of all ``nn.Linear`` layers of ``module``."""
    return sum(layer.weight.numel() for layer in _linears(module))


def _linears(module):
    """The ``nn.Linear`` layers of ``module``, in ``modules()`` order (the output last)."""
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def _check_arguments(module, ratio, importance, iterative_steps):
    """Raise ``ValueError`` for arguments :func:`torch_pruning_prune` cannot honour."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio!r}.")
    if importance not in IMPORTANCES:
        raise ValueError(f"importance must be one of {sorted(IMPORTANCES)}, got {importance!r}.")
    if int(iterative_steps) != iterative_steps or iterative_steps < 1:
        raise ValueError(f"iterative_steps must be a positive int, got {iterative_steps!r}.")
    if len(_linears(module)) < 2:
        raise ValueError("module needs at least one hidden nn.Linear layer.")


def _as_tensors(module, X, y):
    """``X`` as a tensor of the module's dtype, ``y`` as a tensor."""
    dtype = next(module.parameters()).dtype
    # copies: joblib hands workers read-only memory maps, which torch cannot wrap
    return torch.tensor(np.asarray(X), dtype=dtype), torch.tensor(np.asarray(y))


def _candidate_ratios(widths, global_pruning):
    """Increasing channel ratios, one per distinct Torch-Pruning result, the first 0.

    With local pruning a layer of width ``h`` keeps ``floor(h * x)`` units at ``x = 1 -
    pruning_ratio``, which steps at ``x = j / h``; with global pruning ``floor(n * x)`` of
    the ``n`` hidden units stay. Each candidate is the midpoint of an interval between
    consecutive steps (exact fractions, then one float), every layer keeping >= 1 unit.
    Layers of one unit are left out: Torch-Pruning skips them.
    """
    widths = [h for h in widths if h > 1]  # Torch-Pruning never prunes a 1-unit layer
    if not widths:
        return [0.0]
    if global_pruning:
        n = sum(widths)
        steps = {Fraction(j, n) for j in range(len(widths), n)}
    else:
        steps = {Fraction(j, h) for h in widths for j in range(1, h)}
        steps = {s for s in steps if s >= Fraction(1, min(widths))}
    above = sorted(steps | {Fraction(1)}, reverse=True)  # 1 = the dense network
    xs = [Fraction(1)] + [(lo + hi) / 2 for hi, lo in pairwise(above)]
    return [0.0] + [float(1 - x) for x in xs[1:]]


def _bisect(trial, candidates, n_target):
    """``(best, next, results)``: the last candidate removing at most ``n_target`` weights,
    the one after it (None if none), ``{index: trial(candidate)}`` of those run; assumes
    the removed count grows along ``candidates`` (``candidates[0]`` removes nothing)."""
    results = {0: trial(candidates[0])}
    lo, hi = 0, len(candidates)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        results[mid] = trial(candidates[mid])
        lo, hi = (mid, hi) if results[mid][0] <= n_target else (lo, mid)
    return lo, (hi if hi < len(candidates) else None), results


def _scan(trial, candidates, n_target):
    """Like :func:`_bisect` without its assumption: every candidate is run; ``next`` is
    the one removing the fewest weights above ``n_target``. Only those two are kept."""
    kept = {}
    best = following = None
    for index, channel_ratio in enumerate(candidates):
        removed, pruned = trial(channel_ratio)
        if removed <= n_target and (best is None or removed > kept[best][0]):
            kept.pop(best, None)
            best, kept[index] = index, (removed, pruned)
        elif removed > n_target and (following is None or removed < kept[following][0]):
            kept.pop(following, None)
            following, kept[index] = index, (removed, pruned)
    return best, following, kept


def _prune_copy(module, X, y, loss_fn, channel_ratio, importance, global_pruning,
                iterative_steps, seed):
    """A deep copy of ``module`` pruned by Torch-Pruning at ``channel_ratio``."""
    pruned = copy.deepcopy(module)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        scorer = IMPORTANCES[importance]()
        if global_pruning:
            scorer = _keep_best_unit(scorer)
        pruner = tp.pruner.MetaPruner(
            pruned, example_inputs=X[:1], importance=scorer, global_pruning=global_pruning,
            pruning_ratio=channel_ratio, iterative_steps=iterative_steps,
            ignored_layers=[_linears(pruned)[-1]])
        for _ in range(iterative_steps):
            if importance == "taylor":
                pruned.zero_grad()
                loss_fn(pruned(X), y).backward()
            pruner.step()
    for parameter in pruned.parameters():
        parameter.grad = None
    return pruned


def _keep_best_unit(scorer):
    """``scorer`` with the best unit of each group scored ``+inf``, never pruned."""
    def scores(group):
        imp = scorer(group)
        if imp is None or imp.numel() == 0:
            return imp
        imp = imp.clone()
        imp[torch.argmax(torch.nan_to_num(imp, nan=-math.inf))] = math.inf
        return imp
    return scores
