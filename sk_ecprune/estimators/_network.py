"""The user's own network and training loop: ``module=``, ``callbacks=`` and ``__`` parameters.

skorch's conventions, carried over to the estimators:

- ``module`` is None (the package's MLP from ``hidden_layer_sizes`` and ``activation``), an
  ``nn.Module`` class (built with the ``module__*`` parameters) or an ``nn.Module`` instance
  (used as it is: a trained one with ``max_epochs=0`` is pruned without dense training);
- ``callbacks`` is a list of skorch callbacks (instances or classes) or ``(name, callback)``
  pairs, added to every training stage after the package's own;
- nested parameters ``module__*``, ``optimizer__*`` and ``callbacks__<name>__*`` are stored
  on the estimator as skorch stores them on a net, so that ``get_params``, ``set_params``,
  ``clone`` and the searches handle them.

This module resolves them into what :func:`._build.build_net` gives skorch, and checks them
with messages that name the parameter.
"""

from __future__ import annotations

import copy
import inspect

import torch
from skorch.callbacks import Callback, EarlyStopping
from torch import nn

from ..engine import hidden_widths
from ._params import InvalidParameterError

__all__ = [
    "NESTED_PREFIXES",
    "NestedParamsMixin",
    "RESERVED_CALLBACK_NAMES",
    "build_module",
    "check_module",
    "hidden_layer_sizes_of",
    "check_network_params",
    "is_nested",
    "nested_params",
    "split_nested",
    "user_callbacks",
]

#: Prefixes of the nested parameters the estimators accept, as skorch spells them.
NESTED_PREFIXES = ("module__", "optimizer__", "callbacks__")

#: Names of the package's own callbacks: a user callback cannot take (or replace) them.
RESERVED_CALLBACK_NAMES = frozenset(
    {
        "hold_removed_weights",
        "raise_on_divergence",
        "valid_score",
        "early_stopping",
        "stop_on_train_loss",
        "epoch_log",
        "progress_bar",
        # skorch's default callbacks
        "epoch_timer",
        "train_loss",
        "valid_loss",
        "valid_acc",
        "print_log",
    }
)

#: Constructor arguments a ``module`` class receives from the data when it takes them and
#: ``module__*`` does not set them (the names of the package's MLP).
DATA_ARGUMENTS = ("n_features", "n_outputs")


# ---------------------------------------------------------------------- nested parameters
def is_nested(name: str) -> bool:
    """Whether ``name`` is a nested parameter (``module__*``, ``optimizer__*``, ...)."""
    return name.startswith(NESTED_PREFIXES) and len(name) > name.index("__") + 2


def split_nested(params: dict, owner: str) -> tuple[dict, dict]:
    """``(plain, nested)`` parameters of ``params``; an :class:`InvalidParameterError` (a
    TypeError) for a ``__`` name with an unknown prefix.

    ``owner`` names the class for the message, as Python names it for an unexpected
    keyword argument.
    """
    nested = {name: value for name, value in params.items() if is_nested(name)}
    unknown = [name for name in params if name not in nested and "__" in name]
    if unknown:
        raise InvalidParameterError(
            f"{owner} got unexpected nested parameter(s) {unknown}; nested parameters start "
            f"with one of {', '.join(NESTED_PREFIXES)} (skorch's names), e.g. "
            "optimizer__momentum=0.9, module__width=32, callbacks__lr__step_size=5."
        )
    return {k: v for k, v in params.items() if k not in nested}, nested


def nested_params(estimator, prefix: str = "") -> dict:
    """The nested parameters stored on ``estimator`` whose names start with ``prefix``."""
    return {
        name: value
        for name, value in vars(estimator).items()
        if is_nested(name) and name.startswith(prefix)
    }


class NestedParamsMixin:
    """scikit-learn's ``get_params``/``set_params`` with skorch's nested parameters.

    The constructor passes its ``**kwargs`` to :meth:`_store_nested_params`, which stores
    each nested parameter as an attribute of its own name (as skorch's nets do);
    ``get_params`` lists them next to the constructor's, so that ``clone`` rebuilds them and
    a search can vary them, and ``set_params`` sets them.
    """

    def _store_nested_params(self, kwargs):
        """Store ``kwargs`` as attributes. Names that are not nested parameters are kept
        too (scikit-learn's constructors never raise) and refused by ``fit``
        (:meth:`_check_extra_params`)."""
        extra = tuple(name for name in kwargs if not is_nested(name))
        if extra:
            self._extra_param_names = extra
        for name, value in kwargs.items():
            setattr(self, name, value)

    def _check_extra_params(self):
        extra = getattr(self, "_extra_param_names", ())
        if extra:
            split_nested(dict.fromkeys(extra), type(self).__name__)  # names a bad prefix
            raise InvalidParameterError(
                f"{type(self).__name__} got unexpected keyword argument(s) {list(extra)}; "
                f"nested parameters start with one of {', '.join(NESTED_PREFIXES)}."
            )

    def get_params(self, deep=True):
        """Parameters of this estimator, the nested ones (``optimizer__*``, ...) included.

        Parameters
        ----------
        deep : bool, default=True
            As for scikit-learn's ``BaseEstimator.get_params``.

        Returns
        -------
        params : dict
            Parameter names mapped to their values.
        """
        params = super().get_params(deep=deep)
        params.update(nested_params(self))
        params.update({name: getattr(self, name)
                       for name in getattr(self, "_extra_param_names", ())})
        return params

    def set_params(self, **params):
        """Set parameters, the nested ones (``optimizer__momentum=0.9``, ...) included.

        Parameters
        ----------
        **params : dict
            Estimator parameters.

        Returns
        -------
        self : estimator instance
        """
        nested = {name: value for name, value in params.items() if is_nested(name)}
        super().set_params(**{k: v for k, v in params.items() if k not in nested})
        for name, value in nested.items():
            setattr(self, name, value)
        return self


# ---------------------------------------------------------------------------- checks
def check_network_params(estimator) -> None:
    """Raise an :class:`InvalidParameterError` for a ``module``, ``callbacks`` or nested
    parameter ``fit`` cannot use (before anything is trained)."""
    estimator._check_extra_params()
    _check_module(estimator.module, nested_params(estimator, "module__"))
    names = [name for name, _ in _named_callbacks(estimator.callbacks)]
    for name in nested_params(estimator, "callbacks__"):
        target = name[len("callbacks__"):].split("__", 1)[0]
        if target not in names:
            reserved = " (one of the package's own, which cannot be changed)" if (
                target in RESERVED_CALLBACK_NAMES) else ""
            raise InvalidParameterError(
                f"{name}: no callback named {target!r} in callbacks{reserved}; the callbacks "
                f"are named {names or 'nothing (callbacks is empty)'}. Name a callback with a "
                "(name, callback) pair, or use the class name of an unnamed one."
            )
    _check_optimizer_options(estimator.optimizer, nested_params(estimator, "optimizer__"))


def _check_module(module, options):
    if module is None:
        if options:
            raise InvalidParameterError(
                f"{sorted(options)} set arguments of a module class, but module=None (the "
                "package's MLP, set by hidden_layer_sizes and activation). Pass module=<an "
                "nn.Module class>, or drop them."
            )
        return
    if isinstance(module, nn.Module):
        if options:
            raise InvalidParameterError(
                f"module= is an instance of {type(module).__name__}, which is used as it is; "
                f"{sorted(options)} would rebuild it from its class and lose its weights. Pass "
                "the class instead, or drop the module__ parameters."
            )
        return
    if not (isinstance(module, type) and issubclass(module, nn.Module)):
        raise InvalidParameterError(
            f"The 'module' parameter must be None, a torch.nn.Module subclass or a "
            f"torch.nn.Module instance. Got {module!r} instead."
        )


def _check_optimizer_options(optimizer, options):
    """Raise if the optimizer class cannot take ``optimizer__*`` (a factory is not checked)."""
    from ._params import OPTIMIZERS

    cls = OPTIMIZERS.get(optimizer, optimizer) if isinstance(optimizer, str) else optimizer
    if not options or not isinstance(cls, type):
        return
    accepted = inspect.signature(cls).parameters
    if any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        return
    bad = [name for name in options if name[len("optimizer__"):] not in accepted]
    if bad:
        raise InvalidParameterError(
            f"{bad}: {cls.__name__} takes no such argument (optimizer={optimizer!r}); it "
            f"takes {sorted(n for n in accepted if n != 'params')}."
        )


def _named_callbacks(callbacks):
    """``(name, callback)`` of ``callbacks`` as skorch names them (class name if unnamed)."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise InvalidParameterError(
            f"The 'callbacks' parameter must be None or a list of skorch callbacks or "
            f"(name, callback) pairs. Got {callbacks!r} instead."
        )
    named = []
    for item in callbacks:
        name, cb = item if isinstance(item, (tuple, list)) and len(item) == 2 else (None, item)
        is_callback = isinstance(cb, Callback) or (
            isinstance(cb, type) and issubclass(cb, Callback))
        if not is_callback or (name is not None and not isinstance(name, str)):
            raise InvalidParameterError(
                f"callbacks: {item!r} is not a skorch Callback (instance or class) or a "
                "(name, callback) pair."
            )
        if name is None:
            name = cb.__name__ if isinstance(cb, type) else type(cb).__name__
        named.append((name, cb))
    _check_callback_names(named)
    return named


def _check_callback_names(named):
    names = [name for name, _ in named]
    for name, cb in named:
        if name in RESERVED_CALLBACK_NAMES:
            raise InvalidParameterError(
                f"callbacks: the name {name!r} belongs to a callback of the package's own "
                "(which stays in place); give yours another name."
            )
        if names.count(name) > 1:
            raise InvalidParameterError(
                f"callbacks: two callbacks are named {name!r}; name them with (name, "
                "callback) pairs."
            )
        stops = cb if isinstance(cb, type) else type(cb)
        if issubclass(stops, EarlyStopping):
            raise InvalidParameterError(
                f"callbacks: {name!r} is skorch's EarlyStopping, which ends training with a "
                "KeyboardInterrupt that the estimators pass on as the user's Ctrl-C. Each stage "
                "already stops on a stalled training loss (n_iter_no_change, tol), or with "
                "early_stopping=True (and validation_fraction) on a stalled validation loss."
            )


# ------------------------------------------------------------------------- resolution
def user_callbacks(estimator) -> list:
    """Fresh ``(name, callback)`` pairs of ``estimator.callbacks`` for one training stage.

    Deep copies: ``fit`` never changes the estimator's parameters, and each stage starts
    from the callbacks as given (skorch's ``initialize`` resets them too).
    """
    return [(name, copy.deepcopy(cb)) for name, cb in _named_callbacks(estimator.callbacks)]


def build_module(estimator, n_features, n_outputs, seed, default):
    """The ``nn.Module`` instance ``fit`` trains, before it goes to skorch.

    ``default()`` builds the package's MLP (``module=None``). A class is called with the
    ``module__*`` parameters, plus ``n_features`` and ``n_outputs`` where its constructor
    takes them and they are not given; its initial weights are drawn with torch's global
    generator seeded from ``seed`` inside :func:`torch.random.fork_rng` (the generator's
    state is restored afterwards). An instance is deep-copied.
    """
    module = estimator.module
    if module is None:
        return default()
    if isinstance(module, nn.Module):
        return copy.deepcopy(module)
    kwargs = {k[len("module__"):]: v for k, v in nested_params(estimator, "module__").items()}
    accepted = inspect.signature(module).parameters
    for name, value in zip(DATA_ARGUMENTS, (n_features, n_outputs)):
        if name in accepted and name not in kwargs:
            kwargs[name] = int(value)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        try:
            return module(**kwargs)
        except TypeError as exc:
            raise TypeError(
                f"module={module.__name__} could not be built with {kwargs}: {exc}. Set its "
                "arguments with module__<name>=... (n_features and n_outputs are filled in "
                "from the data when its constructor takes them)."
            ) from exc


def check_outputs(module, X, n_outputs, owner):
    """Raise if ``module`` does not map a batch of ``X`` to ``(n, n_outputs)`` floats."""
    module_was_training = module.training
    device = next((p.device for p in module.parameters()), X.device)
    try:
        module.eval()
        with torch.no_grad():
            out = module(X[:2].to(device))
    except Exception as exc:
        raise ValueError(
            f"module={type(module).__name__} failed on a batch of X of shape "
            f"{tuple(X[:2].shape)} ({type(exc).__name__}: {exc}); {owner} gives the module "
            "float32 inputs of shape (batch, n_features_in_)."
        ) from exc
    finally:
        module.train(module_was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape[1:]) != (n_outputs,):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"module={type(module).__name__} returned {shape} for a batch of 2 rows; {owner} "
            f"needs a tensor of shape (batch, {n_outputs}) ("
            + ("one logit per class" if owner.endswith("Classifier") else "one value per "
               "target") + ")."
        )


def check_module(estimator, module, X):
    """A module of the user's (``estimator.module`` not None), as built: its outputs fit the
    targets, and it can lose whole units with ``granularity="neuron"``. Called before
    anything is trained."""
    if estimator.module is None:
        return
    check_outputs(module, X, estimator._n_net_outputs, type(estimator).__name__)
    if estimator.granularity == "neuron" and estimator.prune_ratio > 0:
        try:
            hidden_widths(module)
        except ValueError as exc:
            raise ValueError(
                f"granularity='neuron' removes hidden units of a plain chain of layers, and "
                f"module={type(module).__name__} is not one: {exc} Use "
                "granularity='weight', which works on any module."
            ) from None


def hidden_layer_sizes_of(module):
    """Widths of the hidden layers: of the chain (:func:`hidden_widths`), or for any other
    module the ``out_features`` of its ``nn.Linear`` layers but the last, in module order."""
    try:
        return hidden_widths(module)
    except ValueError:
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        return tuple(int(m.out_features) for m in linears[:-1])
