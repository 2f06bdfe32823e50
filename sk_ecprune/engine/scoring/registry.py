"""Weight-removing methods: :class:`WeightScorer`, :data:`SCORERS`, :func:`score_weights`.

A method that removes single weights is a :class:`~sk_ecprune.engine.methods.Method` of kind
``"weight"``. Most rank the weights by a score: a :class:`WeightScorer` defines only

    importance(module, layers, data, *, loss, output_metric, generator) -> Importance

(``data`` is a :class:`~sk_ecprune.engine.recording.ScoringData`, whose iteration yields
``(Xb, yb, wb)``: a method that takes expectations over the data weights each row by
``wb`` when it is not None and divides by ``data.total_weight``; keyword arguments a method
does not use land in ``**_``), one score tensor per layer (shaped like the weight, higher =
more important) and, for methods that compensate, the bias shift ``delta_b[i, j]`` that
best absorbs the removal of ``W[i, j]``; the engine's step selects, masks and compensates.
Whether a method compensates follows from what it returns. A method whose choice and
compensation are one computation (EC-OBS) overrides :meth:`WeightScorer.plan` and
:meth:`WeightScorer.change` too.

:data:`SCORERS` is the weight methods' view of the one registry
(:data:`~sk_ecprune.engine.methods.METHODS`); :func:`register_scorer` also turns a plain
scoring function into a method.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._checks import check_choice
from ..compensation import add_bias_shift
from ..masks import apply_mask, effective_weight, kept_mask
from ..methods import METHODS, LayerChange, Method, make_generator, resolve_method
from ..recording import scoring_session
from ..selection import select
from ..sensitivities import METRICS

__all__ = ["SCORERS", "Importance", "LayerChange", "ScoringFunction", "WeightScorer",
           "checked_scores", "decide_compensation", "get_scorer", "make_generator",
           "register_scorer", "score_weights"]


@dataclass
class Importance:
    """Scores of one method, and its per-weight bias shifts if it compensates.

    Attributes
    ----------
    scores : list of torch.Tensor
        One tensor per ``nn.Linear`` layer, in module order, shaped like its weight.
        Higher means more important.
    bias_shifts : list of torch.Tensor or None
        ``bias_shifts[l][i, j]`` is added to ``bias[i]`` of layer ``l`` when ``W[i, j]`` is
        removed. ``None`` for methods without compensation.
    """

    scores: list[torch.Tensor]
    bias_shifts: list[torch.Tensor] | None = None

    @property
    def compensates(self) -> bool:
        """Whether the method gave bias shifts to compensate its removals with."""
        return self.bias_shifts is not None


@dataclass
class _Selection:
    """A scoring method's plan of one step: the scores, the masks before and after."""

    importance: Importance
    compensate: bool
    kept: list
    keep: list


class WeightScorer(Method):
    """A method that removes the weights its :meth:`importance` ranks lowest (see the
    module docstring); compensates with the bias shifts it returns."""

    kind = "weight"

    def importance(self, module, layers, data, *, loss=None, output_metric="euclidean",
                   generator=None) -> Importance:
        """Scores of every weight (and bias shifts, for a compensating method)."""
        raise NotImplementedError

    def plan(self, step) -> _Selection:
        importance = checked_scores(self.importance(
            step.module, step.layers, step.data, loss=step.loss,
            output_metric=step.output_metric, generator=step.generator), step.method_name)
        compensate = decide_compensation(step.compensate, importance, step.layers,
                                         step.method_name)
        kept = [kept_mask(layer) for layer in step.layers]
        magnitudes = None
        if step.scope == "magnitude_budget":
            magnitudes = [effective_weight(layer).abs() for layer in step.layers]
        keep = select(importance.scores, kept, step.target, step.scope, step.layer_floor,
                      magnitudes)
        return _Selection(importance, compensate, kept, keep)

    def change(self, step, plan: _Selection, index: int) -> LayerChange:
        layer = step.layers[index]
        apply_mask(layer, plan.keep[index])
        shift = None
        if plan.compensate:
            shift = add_bias_shift(layer, plan.importance.bias_shifts[index],
                                   plan.kept[index] & ~plan.keep[index])
        return LayerChange(shift, compensated=plan.compensate)


class ScoringFunction(WeightScorer):
    """A scoring function as a method (what :func:`register_scorer` makes of a function).

    Parameters
    ----------
    function : callable
        ``function(module, layers, data, *, loss, output_metric, generator) -> Importance``.
    """

    def __init__(self, function):
        self.function = function

    def importance(self, module, layers, data, **options) -> Importance:
        return self.function(module, layers, data, **options)

    def describe(self) -> str:
        return (self.function.__doc__ or self.function.__name__).strip().splitlines()[0]


def _as_weight_method(method):
    """A method for :data:`SCORERS`: a Method as it is, a function wrapped."""
    if isinstance(method, Method) or (isinstance(method, type) and issubclass(method, Method)):
        return method
    if not callable(method):
        raise TypeError(f"A scoring method must be a Method or a function; got {method!r}.")
    return ScoringFunction(method)


#: Method name -> weight-removing method: the view of the one registry for
#: ``granularity="weight"``. :func:`register_scorer` adds to it.
SCORERS = METHODS.view("weight", wrap=_as_weight_method)


def register_scorer(name: str):
    """Decorator that registers a scoring function (or a :class:`WeightScorer`) as ``name``.

    The function's docstring (first line) is how the method describes itself. Returns the
    function unchanged.
    """

    def add(function):
        SCORERS[name] = function
        return function

    return add


def get_scorer(method) -> WeightScorer:
    """The weight method ``method`` (a name or an instance), or an error listing the names."""
    return resolve_method(method, "weight")[0]


def checked_scores(importance, name):
    """``importance``, or a FloatingPointError if some score is not finite."""
    for scores in importance.scores:
        if not torch.isfinite(scores).all():
            raise FloatingPointError(
                f"method {name!r} produced non-finite scores; check the module's outputs "
                "on X for NaN or overflow."
            )
    return importance


def decide_compensation(requested, importance, layers, method):
    """Compensate if asked, or (``None``) whenever the method returned bias shifts."""
    if requested is None:
        return importance.compensates and all(layer.bias is not None for layer in layers)
    if requested and not importance.compensates:
        raise ValueError(
            f"method={method!r} returns no bias shifts to compensate with; use "
            "compensate=None or False, or a compensating method such as 'ec'."
        )
    return requested


def score_weights(
    module: nn.Module,
    X,
    y=None,
    *,
    method="ec",
    loss=None,
    batch_size: int = 1024,
    output_metric: str = "euclidean",
    random_state=None,
    check_finite: bool = True,
    sample_weight=None,
) -> Importance:
    """Importance of every weight of every ``nn.Linear`` layer of ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        Any module whose ``nn.Linear`` layers are each applied once per sample. Scored in
        evaluation mode and left in the mode it was in; never modified.
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Data over which expectations are taken. Never modified.
    y : array-like or torch.Tensor, default=None
        Targets, only for methods that use the loss (``"gradient_magnitude"``).
    method : str or WeightScorer, default="ec"
        A key of :data:`SCORERS` (each method's docstring says what it computes), one
        registered with :func:`register_scorer`, or a method instance.
    loss : callable, default=None
        ``loss(output, y) -> scalar`` batch mean, for ``"gradient_magnitude"``.
    batch_size : int, default=1024
        Samples per scoring pass; bounds the memory used.
    output_metric : {"euclidean", "fisher"}, default="euclidean"
        How a change of the output is measured by the methods that measure one (``"ec"``,
        ``"obd"``, ``"nonlinear"``): squared Euclidean norm, or the softmax Fisher metric
        for classifier logits.
    random_state : int, torch.Generator or None, default=None
        Seed for ``"random"``.
    check_finite : bool, default=True
        Check ``X`` for NaN and infinity, batch by batch; False for data checked before.
    sample_weight : array-like or torch.Tensor of shape (n_samples,), default=None
        Non-negative weight of each row of ``X`` (finite, not all zero): the expectations
        of ``"ec"``, ``"obd"``, ``"nonlinear"`` and the loss of ``"gradient_magnitude"``
        become weighted means (an integer weight counts as that many copies of the row);
        ``"magnitude"`` and ``"random"`` do not look at the data. None weighs all rows
        equally. Never modified.

    Returns
    -------
    importance : Importance
        ``importance.scores``: one tensor per ``nn.Linear`` layer, in module order, shaped
        like its weight, higher for more important weights; ``importance.bias_shifts``: the
        bias shifts of a compensating method, else None.
    """
    scorer, name = resolve_method(method, "weight")
    check_choice("output_metric", output_metric, METRICS)
    with scoring_session(module, X, y, batch_size, check_finite, sample_weight) as (layers, data):
        importance = scorer.importance(
            module,
            layers,
            data,
            loss=loss,
            output_metric=output_metric,
            generator=make_generator(random_state),
        )
    return checked_scores(importance, name)
