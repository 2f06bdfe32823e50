"""Removing whole hidden units (structured pruning): scores, selection and compensation.

Removing hidden unit ``j`` of layer ``l`` deletes row ``j`` of ``W^l`` and column ``j`` of
``W^{l+1}`` (its consumer), so that :func:`~.compaction.compact` can then drop the unit and
the network really becomes smaller. Here the unit is removed by masking both (exact zeros,
through ``torch.nn.utils.prune``) and its loss compensated in the consumer:

- ``"ec"``: the consumer's bias only. The unit's output ``z_j`` is replaced by the constant
  ``c_j = E[S_j z_j] / E[S_j]`` with ``S_j = |R dy/dz_j|^2`` (the sensitivity of the output
  to the unit, in the output metric), at cost ``E[S_j z_j^2] - E[S_j z_j]^2 / E[S_j]``: the
  structured twin of EC (FLAP and VBP use the plain mean);
- ``"ec_obs"``: the consumer's bias and its weights from the remaining units. Each row of
  the consumer loses its entry ``j`` and its kept entries move to their least-squares
  optimum (:mod:`.scoring.ec_obs`, the layer's shared ``s``-weighted Hessian ``K``): cost
  ``sum_i B_i W_ij^2 / [K^-1]_jj``; units removed together are solved jointly;
- methods that need no data (``"magnitude"``, ``"random"``) do not compensate.

Units are ranked by cost *per weight they remove* (a unit of a narrow layer removes few
weights; ranking by cost alone empties small layers), globally over the hidden layers, and
the ratio counts removed weights, as for weight pruning: units are taken in order as long
as the count stays at or below ``round(ratio * n_weights)``. Every hidden layer keeps at
least one unit (and ``layer_floor`` of its units).

Only plain chains (:func:`~.chain.linear_groups`) can lose units: elsewhere the engine does
not know which layer reads which unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
import torch
from torch import nn

from ._checks import check_choice
from .chain import NotAChain, linear_groups
from .masks import apply_mask, effective_weight, kept_mask
from .methods import METHODS, LayerChange, Method, make_generator, register_method, \
    resolve_method
from .recording import scoring_session
from .scoring.registry import decide_compensation
from .scoring.ec_obs.procedure import layer_metrics, write_joint_update
from .scoring.ec_obs.solvers import single_costs
from .sensitivities import METRICS, recorded_sensitivities

__all__ = [
    "NEURON_SCORERS",
    "ECOBSUnits",
    "ECUnits",
    "MagnitudeUnits",
    "NeuronImportance",
    "RandomUnits",
    "UnitScorer",
    "hidden_layers",
    "register_neuron_scorer",
    "remove_hidden_units",
    "score_neurons",
    "select_units",
]


@dataclass
class HiddenLayer:
    """Hidden layer ``index`` of a chain: the ``layer`` that makes its units, the
    ``consumer`` that reads them."""

    index: int
    layer: nn.Linear
    consumer: nn.Linear

    def alive(self) -> torch.Tensor:
        """Units still present: some incoming or outgoing weight is nonzero."""
        return kept_mask(self.layer).any(1) | kept_mask(self.consumer).any(0)

    def weights_of(self) -> torch.Tensor:
        """Per unit, the weights still present that its removal would take away."""
        return (kept_mask(self.layer).sum(1) + kept_mask(self.consumer).sum(0)).double()


@dataclass
class NeuronImportance:
    """Per hidden layer, the cost of removing each unit, and how to compensate.

    Attributes
    ----------
    scores : list of torch.Tensor
        One tensor of shape ``(width,)`` per hidden layer: the cost of removing each unit
        (higher = more important), in the method's units.
    constants : list of torch.Tensor or None
        For a method that compensates with the consumer's bias: the constant ``c_j`` that
        replaces unit ``j``'s output. None for methods without compensation.
    metrics : list or None
        For a method whose consumer's kept weights move too (``"ec_obs"``): the consumer's
        :class:`~.scoring.ec_obs.statistics.RowMetric`, one per hidden layer.
    """

    scores: list[torch.Tensor]
    constants: list[torch.Tensor] | None = None
    metrics: list | None = None  # "ec_obs": each consumer's RowMetric (joint update)

    @property
    def compensates(self) -> bool:
        return self.constants is not None or self.metrics is not None


@dataclass
class _UnitSelection:
    """A unit method's plan of one step: the hidden layers, the units each loses."""

    hidden: list
    take: list
    importance: NeuronImportance
    compensate: bool


class UnitScorer(Method):
    """A method that removes the hidden units its :meth:`unit_importance` ranks lowest per
    weight they take away, and compensates in each consumer as its importance says."""

    kind = "neuron"

    def unit_importance(self, module, layers, hidden, data, *, output_metric="euclidean",
                        generator=None) -> NeuronImportance:
        """The cost of removing each unit of each of the ``hidden`` layers."""
        raise NotImplementedError

    def plan(self, step) -> _UnitSelection:
        hidden = hidden_layers(step.module, step.layers)
        importance = _checked(self.unit_importance(
            step.module, step.layers, hidden, step.data, output_metric=step.output_metric,
            generator=step.generator), step.method_name)
        compensate = decide_compensation(step.compensate, importance, step.layers,
                                         step.method_name)
        n_weights = sum(layer.weight.numel() for layer in step.layers)
        take = select_units(importance, hidden, step.layers, round(step.target * n_weights),
                            step.layer_floor)
        return _UnitSelection(hidden, take, importance, compensate)

    def change(self, step, plan: _UnitSelection, index: int) -> LayerChange:
        """Layer ``index`` loses its inputs from the units of hidden layer ``index - 1``
        (and that layer the rows of those units), compensated here."""
        shift, damping = None, 0.0
        if index > 0:
            h = plan.hidden[index - 1]
            shift = remove_hidden_units(h, plan.take[index - 1], plan.importance,
                                        plan.compensate)
            metrics = plan.importance.metrics or []
            if index - 1 < len(metrics) and metrics[index - 1] is not None:
                damping = metrics[index - 1].relative_added_damping()
        return LayerChange(shift, added_damping=damping, compensated=plan.compensate)


class UnitScoringFunction(UnitScorer):
    """A unit-scoring function as a method (what :func:`register_neuron_scorer` makes)."""

    def __init__(self, function):
        self.function = function

    def unit_importance(self, module, layers, hidden, data, **options):
        return self.function(module, layers, hidden, data, **options)

    def describe(self) -> str:
        return (self.function.__doc__ or self.function.__name__).strip().splitlines()[0]


def _as_unit_method(method):
    if isinstance(method, Method) or (isinstance(method, type) and issubclass(method, Method)):
        return method
    return UnitScoringFunction(method)


#: Method name -> unit-removing method: the view of the one registry for
#: ``granularity="neuron"``.
NEURON_SCORERS = METHODS.view("neuron", wrap=_as_unit_method)


def register_neuron_scorer(name: str):
    """Decorator that registers a unit-scoring function (or a :class:`UnitScorer`).

    Signature: ``scorer(module, layers, hidden, data, *, output_metric, generator)``, returning
    a :class:`NeuronImportance`; ``hidden`` lists the :class:`HiddenLayer` s of the chain.
    """

    def add(function):
        NEURON_SCORERS[name] = function
        return function

    return add


def hidden_layers(module: nn.Module, layers: list[nn.Linear]) -> list[HiddenLayer]:
    """The hidden layers of a plain chain, or a ValueError that says why there are none."""
    try:
        _, groups = linear_groups(module, allow_linear_hooks=True)
    except NotAChain as exc:
        raise ValueError(f"granularity='neuron' needs a plain chain of layers: {exc}") from None
    if [group.linear for group in groups] != list(layers):
        raise ValueError("granularity='neuron' needs every nn.Linear of the module in its chain.")
    return [HiddenLayer(i, groups[i].linear, groups[i + 1].linear) for i in range(len(groups) - 1)]


def score_neurons(module, X, *, method="ec", batch_size=1024, output_metric="euclidean",
                  random_state=None, check_finite=True, sample_weight=None) -> NeuronImportance:
    """Importance of every hidden unit of a plain chain (see the module docstring).

    Parameters
    ----------
    module : torch.nn.Module
        A plain chain of ``nn.Linear`` layers and elementwise modules (an ``nn.Sequential``
        or a module with ``sequential_chain()``), in evaluation mode while scored.
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Data for the expectations. Never modified.
    method : str, default="ec"
        A key of :data:`NEURON_SCORERS`.
    batch_size, output_metric, random_state, check_finite, sample_weight
        As for :func:`~sk_ecprune.engine.score_weights`.

    Returns
    -------
    importance : NeuronImportance
        One score per unit of each hidden layer, and the compensating constants of a
        compensating method.
    """
    with scoring_session(module, X, None, batch_size, check_finite, sample_weight) as (
        layers, data
    ):
        hidden = hidden_layers(module, layers)
        return _score(module, layers, hidden, data, method, output_metric,
                      make_generator(random_state))


def _score(module, layers, hidden, data, method, output_metric, generator):
    scorer, name = resolve_method(method, "neuron")
    check_choice("output_metric", output_metric, METRICS)
    return _checked(scorer.unit_importance(module, layers, hidden, data,
                                           output_metric=output_metric, generator=generator),
                    name)


def _checked(importance, name):
    for scores in importance.scores:
        if not torch.isfinite(scores).all():
            raise FloatingPointError(f"method {name!r} produced non-finite unit scores; check "
                                     "the module's outputs on X for NaN or overflow.")
    return importance


# ------------------------------------------------------------------------------ scoring
@register_method("magnitude")
class MagnitudeUnits(UnitScorer):
    """Squared L2 norm of each unit's incoming and outgoing weights."""

    def unit_importance(self, module, layers, hidden, data, **_) -> NeuronImportance:
        return NeuronImportance([
            effective_weight(h.layer).double().square().sum(1)
            + effective_weight(h.consumer).double().square().sum(0)
            for h in hidden
        ])


@register_method("random")
class RandomUnits(UnitScorer):
    """Uniform random scores, from ``generator``."""

    def unit_importance(self, module, layers, hidden, data, *, generator=None, **_) -> NeuronImportance:
        return NeuronImportance([
            torch.rand(h.layer.out_features, generator=generator, dtype=torch.float64).to(
                h.layer.weight.device)
            for h in hidden
        ])


@register_method("ec")
class ECUnits(UnitScorer):
    """Structured EC: the output change left after the consumer's bias absorbs the unit."""

    def unit_importance(self, module, layers, hidden, data, *, output_metric="euclidean", **_) -> NeuronImportance:
        stats = [_UnitStatistics() for _ in hidden]
        for inputs, sensitivities, w in recorded_sensitivities(module, layers, data, output_metric,
                                                               of="inputs"):
            for stat, h in zip(stats, hidden):  # the units are the consumer's inputs
                stat.update(sensitivities[h.index + 1], inputs[h.index + 1], w)
        costs, constants = zip(*(stat.cost_and_constant() for stat in stats))
        return NeuronImportance(list(costs), list(constants))


@register_method("ec_obs")
class ECOBSUnits(UnitScorer):
    """Structured EC-OBS: the consumer's bias and other inputs' weights absorb the unit."""

    def unit_importance(self, module, layers, hidden, data, *, output_metric="euclidean", **_) -> NeuronImportance:
        consumers = [h.index + 1 for h in hidden]
        metrics = layer_metrics(module, layers, data, output_metric, only=consumers)
        return NeuronImportance(
            [single_costs(metrics[h.index + 1], effective_weight(h.consumer))[0].sum(0)
             for h in hidden],
            metrics=[metrics[index] for index in consumers])


class _UnitStatistics:
    """Streaming ``E[S]``, ``E[S z]``, ``E[S z^2]`` per unit, about a per-unit shift (the
    first batch's mean, so that ``C - A^2/B`` does not cancel), in float64."""

    def __init__(self):
        self.n = 0.0  # rows seen, or their total weight
        self.shift = self.B = self.A = self.C = None

    def update(self, S: torch.Tensor, z: torch.Tensor, w: torch.Tensor | None = None) -> None:
        """Add a batch: unit sensitivities ``S`` and outputs ``z`` (n, units), weights ``w``."""
        if self.shift is None:
            self.shift = z.mean(0)
            self.B, self.A, self.C = (torch.zeros(z.shape[1], dtype=torch.float64,
                                                  device=z.device) for _ in range(3))
        centred = z.double() - self.shift.double()
        if w is None:
            self.n += z.shape[0]
        else:
            S = S * w.unsqueeze(1)
            self.n += float(w.sum(dtype=torch.float64))
        S = S.double()
        self.B += S.sum(0)
        self.A += (S * centred).sum(0)
        self.C += (S * centred.square()).sum(0)

    def cost_and_constant(self):
        """Per unit: the cost ``C - A^2/B`` (0 for a dead unit, or one constant on the
        weighted rows: the bias absorbs it exactly) and the constant ``E_S[z]``."""
        B, A, C = self.B / self.n, self.A / self.n, self.C / self.n
        alive = B > 0
        mean = torch.where(alive, A / torch.where(alive, B, torch.ones_like(B)), 0.0)
        cost = C - A * mean
        mean_square = C + 2 * self.shift.double() * A + self.shift.double().square() * B
        cost = torch.where(alive & (cost > 1e-9 * mean_square.clamp_min(0)), cost, 0.0)
        return cost, mean + self.shift.double()


# ---------------------------------------------------------------------------- selection
def select_units(importance, hidden, layers, n_target, layer_floor=0.0):
    """Boolean masks (True = remove) of the units to take away, one per hidden layer.

    Units are ranked by cost per weight their removal takes away (globally, over all hidden
    layers) and taken in that order while the weights absent from ``layers`` (counting
    those gone before) stay at or below ``n_target``. A weight reached by two removed units
    (the consumer's entry between two of them) counts once. Each layer keeps at least one
    unit and ``ceil(layer_floor * width)`` of them.
    """
    gone = {id(layer): ~kept_mask(layer).cpu() for layer in layers}
    n_gone = sum(int(g.sum()) for g in gone.values())
    take = [torch.zeros(h.layer.out_features, dtype=torch.bool) for h in hidden]
    for _, index, unit in _ranked_candidates(importance, hidden, layer_floor):
        h = hidden[index]
        row, col = gone[id(h.layer)][unit], gone[id(h.consumer)][:, unit]  # views
        new = int((~row).sum() + (~col).sum())
        if n_gone + new > n_target:
            break  # the next unit in order does not fit: the count stays at or below
        row[:], col[:] = True, True
        take[index][unit] = True
        n_gone += new
    return take


def _ranked_candidates(importance, hidden, layer_floor):
    """``(priority, layer, unit)`` of the removable units, lowest priority first; the best
    ``max(1, ceil(layer_floor * width))`` units of each layer are kept out."""
    candidates = []
    for index, (h, scores) in enumerate(zip(hidden, importance.scores)):
        alive = h.alive().cpu()
        priority = scores.detach().double().cpu() / h.weights_of().cpu().clamp_min(1)
        n_keep = max(1, math.ceil(layer_floor * h.layer.out_features - 1e-9))
        order = [int(u) for u in torch.argsort(priority, stable=True, descending=True)]
        protected = set([u for u in order if alive[u]][:n_keep])
        candidates += [(float(priority[u]), index, u) for u in order
                       if alive[u] and u not in protected]
    return sorted(candidates)


# ------------------------------------------------------------------------- compensation
def remove_hidden_units(h, units, importance, compensate):
    """Mask the rows of ``h.layer`` and the columns of ``h.consumer`` of the ``units`` (True =
    remove); compensate in the consumer. Returns its bias shift (None where none)."""
    if not units.any():
        return None
    units = units.to(h.layer.weight.device)
    shift = None
    if compensate and importance.metrics is not None:
        shift = _joint_update_consumer(h, units, importance.metrics[h.index])
    elif compensate:
        constants = importance.constants[h.index].to(h.consumer.weight.dtype)
        shift = effective_weight(h.consumer)[:, units] @ constants[units]
        with torch.no_grad():
            h.consumer.bias.add_(shift)
        shift = shift.double()
    rows = kept_mask(h.layer) & ~units.unsqueeze(1)
    cols = kept_mask(h.consumer) & ~units.unsqueeze(0)
    apply_mask(h.layer, rows)
    apply_mask(h.consumer, cols)
    return shift


def _joint_update_consumer(h, units, metric):
    """Remove the columns ``units`` of the consumer with EC-OBS's joint update of every row;
    returns the bias shift (None without a bias: then only the weights move)."""
    removed = ~kept_mask(h.consumer) | units.unsqueeze(0)
    W0 = effective_weight(h.consumer).double()
    return write_joint_update(h.consumer, metric, W0, removed).bias_shift
