"""The registry of scoring methods, and :func:`score_weights`, the one public way to call one.

Every scoring function has the signature::

    scorer(module, layers, data, *, loss, output_metric, generator) -> Importance

(``data`` is a :class:`~sk_ecprune.engine.recording.ScoringData`, whose iteration yields
``(Xb, yb, wb)``: a method that takes expectations over the data weights each row by
``wb`` when it is not None and divides by ``data.total_weight``; keyword arguments a method
does not use land in ``**_``) and returns one score tensor per layer (shaped like the
weight, higher = more important) and, for methods that compensate, the bias shift
``delta_b[i, j]`` that best absorbs the removal of ``W[i, j]``. Whether a method compensates
follows from what it returns. Adding a method is one function and one
:func:`register_scorer` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .._checks import check_choice
from ..recording import scoring_session
from ..sensitivities import METRICS

__all__ = ["PROCEDURES", "SCORERS", "Importance", "LayerChange", "get_scorer",
           "make_generator", "register_scorer", "score_weights"]


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


#: Method name -> scoring function. :func:`register_scorer` adds to it.
SCORERS: dict[str, Callable[..., Importance]] = {}

#: Method name -> its own pruning procedure, for the methods whose choice of weights and
#: compensation are one computation (a joint update of the kept weights, layers processed in
#: order); the others go through :func:`~sk_ecprune.engine.prune_model`'s generic step.
PROCEDURES: dict[str, Callable] = {}


@dataclass
class LayerChange:
    """What a pruning procedure did to one layer's kept parameters in one step.

    Attributes
    ----------
    bias_shift : torch.Tensor or None
        The change of the bias (None if it did not move).
    weight_change : float
        Norm of the change of the kept weights (0 if they did not move).
    added_damping : float
        Damping a factorisation had to add beyond the method's own, relative to the
        matrix's mean diagonal (0 if none was needed; see ``LayerReport``).
    """

    bias_shift: torch.Tensor | None = None
    weight_change: float = 0.0
    added_damping: float = 0.0


def register_scorer(name: str, *, procedure: Callable | None = None):
    """Decorator that adds a scoring function to :data:`SCORERS` under ``name``.

    The function's docstring (first line) is how the method describes itself, for example
    in error messages and tables of methods. A method that removes and compensates in one
    computation also gives its ``procedure``::

        procedure(module, layers, data, *, ratio, scope, layer_floor, output_metric,
                  generator, loss) -> list[LayerChange]

    which masks the removed weights (:func:`~sk_ecprune.engine.masks.apply_mask`), writes
    the kept ones (:func:`~sk_ecprune.engine.masks.set_parameters`) and reports each
    layer's change; ``prune_model`` calls it once per step of its schedule.
    """

    def add(function):
        SCORERS[name] = function
        if procedure is None:
            PROCEDURES.pop(name, None)
        else:
            PROCEDURES[name] = procedure
        return function

    return add


def get_scorer(method: str) -> Callable[..., Importance]:
    """The scoring function registered as ``method``, or an error that lists the known ones."""
    return SCORERS[check_choice("method", method, SCORERS)]


def make_generator(random_state, device="cpu") -> torch.Generator:
    """A torch generator from an int seed, an existing generator, or ``None`` (fresh entropy)."""
    if isinstance(random_state, torch.Generator):
        return random_state
    generator = torch.Generator(device=device)
    if random_state is None:
        generator.seed()
    else:
        generator.manual_seed(int(random_state))
    return generator


def score_weights(
    module: nn.Module,
    X,
    y=None,
    *,
    method: str = "ec",
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
    method : str, default="ec"
        A key of :data:`SCORERS` (each function's docstring says what it computes), or
        one registered with :func:`register_scorer`.
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
    scorer = get_scorer(method)
    check_choice("output_metric", output_metric, METRICS)
    with scoring_session(module, X, y, batch_size, check_finite, sample_weight) as (layers, data):
        importance = scorer(
            module,
            layers,
            data,
            loss=loss,
            output_metric=output_metric,
            generator=make_generator(random_state),
        )
    for scores in importance.scores:
        if not torch.isfinite(scores).all():
            raise FloatingPointError(
                f"method {method!r} produced non-finite scores; check the module's outputs "
                "on X for NaN or overflow."
            )
    return importance
