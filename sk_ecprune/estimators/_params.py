"""Parameter checks of the estimators: a small constraint language and the checks beyond it.

scikit-learn's own constraint machinery (``sklearn.utils._param_validation``) is private and
changes without deprecation, so the estimators state their constraints here, in the same
spirit: each parameter lists the kinds of value it accepts, and ``fit`` raises an
:class:`InvalidParameterError` (a ``ValueError`` and a ``TypeError``) that names the
parameter, what it accepts and what it got.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

__all__ = [
    "OPTIMIZERS",
    "InvalidParameterError",
    "check_device",
    "check_granularity",
    "check_hidden_layer_sizes",
    "check_optimizer",
    "validate_params",
]

#: Optimizer name -> ``torch.optim`` class.
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter holds a value ``fit`` cannot use."""


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` (``numbers.Integral`` or ``numbers.Real``) between two bounds.

    NaN and infinity are never accepted (NaN fails every comparison, so it is tested for
    explicitly): no parameter of the estimators has a meaning for them.
    """

    kind: type
    low: float | None
    high: float | None
    closed: str = "left"  # which bounds belong: "left", "right", "both" or "neither"

    def accepts(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        integral = self.kind is numbers.Integral
        left = "[" if self.closed in ("left", "both") else "("
        right = "]" if self.closed in ("right", "both") else ")"
        low = "-inf" if self.low is None else (int(self.low) if integral else float(self.low))
        high = "inf" if self.high is None else (int(self.high) if integral else float(self.high))
        return f"{'an int' if integral else 'a float'} in the range {left}{low}, {high}{right}"


@dataclass(frozen=True)
class Options:
    """Strings among ``values``: a collection, or a callable giving it when checked (so
    that methods registered after import are accepted)."""

    values: object

    def _current(self):
        return self.values() if callable(self.values) else self.values

    def accepts(self, value) -> bool:
        return isinstance(value, str) and value in self._current()

    def __str__(self) -> str:
        return "a str among {" + ", ".join(repr(v) for v in sorted(self._current())) + "}"


@dataclass(frozen=True)
class Kind:
    """Values that ``test`` accepts, described as ``description``."""

    test: Callable[[object], bool]
    description: str

    def accepts(self, value) -> bool:
        return self.test(value)

    def __str__(self) -> str:
        return self.description


NONE = Kind(lambda v: v is None, "None")
BOOLEAN = Kind(lambda v: isinstance(v, (bool, np.bool_)), "a bool")
CALLABLE = Kind(callable, "a callable")
STRING = Kind(lambda v: isinstance(v, str), "a str")
DEVICE = Kind(lambda v: isinstance(v, (str, torch.device)), "a str or a torch.device")
ARRAY_LIKE = Kind(lambda v: isinstance(v, (list, tuple, np.ndarray)), "an array-like")
RANDOM_STATE = Kind(
    lambda v: v is None or isinstance(v, np.random.RandomState)
    or (isinstance(v, numbers.Integral) and not isinstance(v, bool)),
    "an int, a numpy RandomState or None",
)
VERBOSE = Kind(lambda v: isinstance(v, (numbers.Integral, np.bool_)) and v >= 0,
               "an int >= 0 or a bool")
CACHE = Kind(lambda v: callable(getattr(v, "cache", None)),
             "an object implementing 'cache' (a joblib.Memory)")


def validate_params(estimator, constraints: dict) -> None:
    """Raise an :class:`InvalidParameterError` for the first parameter no constraint accepts.

    ``constraints`` maps each constructor parameter to the list of kinds it accepts
    (:class:`Interval`, :class:`Options`, :class:`Kind`).
    """
    params = estimator.get_params(deep=False)
    for name, accepted in constraints.items():
        value = params[name]
        if not any(kind.accepts(value) for kind in accepted):
            kinds = [str(kind) for kind in accepted]
            expected = kinds[0] if len(kinds) == 1 else ", ".join(kinds[:-1]) + " or " + kinds[-1]
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(estimator).__name__} must be {expected}. "
                f"Got {value!r} instead."
            )


def check_granularity(granularity, method, scope, neuron_methods):
    """Raise if ``method`` (not in ``neuron_methods``) or ``scope`` cannot remove whole units
    (``granularity="neuron"``)."""
    kind = getattr(method, "kind", None)  # a method instance (sk_ecprune.engine.Method)
    if kind is not None:
        expected = "neuron" if granularity == "neuron" else "weight"
        if kind != expected:
            raise InvalidParameterError(
                f"method={method!r} is a method of kind {kind!r}; granularity={granularity!r}"
                f" needs one of kind {expected!r}."
            )
    if granularity != "neuron":
        return
    if kind is None and method not in neuron_methods:
        raise InvalidParameterError(
            f"method={method!r} has no version that removes whole units; with "
            f"granularity='neuron' use one of {sorted(neuron_methods)}."
        )
    if scope != "global":
        raise InvalidParameterError(
            f"granularity='neuron' ranks units over all hidden layers; got scope={scope!r}, "
            "use scope='global'."
        )


def check_optimizer(optimizer):
    """Raise if ``optimizer`` is a class that is not a ``torch.optim.Optimizer``.

    Names are checked by the parameter constraints. A callable that is not a class (a
    ``functools.partial``, a factory function) must return an optimizer when called with
    the parameters and ``lr``; the net checks what it returns when it builds it.
    """
    if isinstance(optimizer, type) and not issubclass(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer={optimizer!r} is not a torch.optim.Optimizer subclass; pass one of "
            f"{sorted(OPTIMIZERS)}, an optimizer class such as torch.optim.RMSprop, or a "
            "callable params -> Optimizer (e.g. functools.partial(torch.optim.SGD, "
            "momentum=0.9))."
        )


def check_hidden_layer_sizes(hidden_layer_sizes):
    """Return ``hidden_layer_sizes`` as a tuple of ints, each at least 1.

    Parameters
    ----------
    hidden_layer_sizes : int or array-like of int
        Width of each hidden layer; an int means one hidden layer.

    Returns
    -------
    tuple of int

    Raises
    ------
    ValueError
        If a width is not an integer or is below 1.
    """
    sizes = hidden_layer_sizes
    if isinstance(sizes, numbers.Integral):
        sizes = [sizes]
    sizes = list(np.asarray(sizes, dtype=object).ravel())
    bad = [s for s in sizes if not isinstance(s, numbers.Integral) or isinstance(s, bool) or s < 1]
    if bad:
        raise ValueError(
            "hidden_layer_sizes must hold integer widths >= 1 (one per hidden layer), "
            f"got {hidden_layer_sizes!r}; invalid entries: {bad!r}."
        )
    return tuple(int(s) for s in sizes)


def check_device(device):
    """Return ``torch.device(device)``, or raise if it is malformed or CUDA is missing.

    Parameters
    ----------
    device : str or torch.device
        For example ``"cpu"``, ``"cuda"`` or ``"cuda:1"``.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If ``device`` is not a device torch knows, or names CUDA on a machine where
        ``torch.cuda.is_available()`` is False.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"device={device!r} is not a torch device; use 'cpu', 'cuda' or 'cuda:<index>'."
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} was requested but CUDA is not available "
                "(torch.cuda.is_available() is False: no GPU, or a CPU-only build of "
                "PyTorch). Use device='cpu'."
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible."
            )
    return dev
