"""Cache of the dense stage of ``fit`` (the estimators' ``memory`` parameter).

Grid points of a search that differ only in how the network is pruned or fine-tuned
(``prune_ratio``, ``method``, ``scope``, ``finetune_epochs``, ...) start from the same trained
dense network. :func:`train_dense` trains that network from a full description of the dense
stage (:func:`dense_spec`) and the data, and returns everything ``fit`` needs to continue; it is
a pure function, so ``memory.cache(train_dense)`` (a :class:`joblib.Memory`) stores its result
on disk and returns it for every later call with an equal description and equal data.
:func:`fit_dense_cached` is what the estimators call: it looks the entry up, trains it on a
miss, and loads it into the estimator's own (freshly built) skorch net.

Exactness. A cached fit is bit-for-bit the uncached fit with the same settings (on CPU, with
the same torch build and thread settings): the entry holds the trained module, optimizer and
history, and the state of the net's private batch-order generator right after training.
Loading it restores that state, so fine-tuning shuffles its batches exactly as it would
after training in the same process. Uncached fits are unchanged by this module.

What is in the key (:func:`dense_spec`): the estimator class, every constructor parameter
except the ones that act only after the dense training (:data:`PRUNING_STAGE_PARAMETERS`),
the nested parameters (``optimizer__*``, ``module__*``, ``callbacks__*``), the source of
the classes of ``module`` and of the ``callbacks`` (where ``inspect`` finds it; joblib hashes a
class by name), the seed derived from ``random_state``, the fitted attributes the network is built from
(``n_features_in_``, ``classes_`` / ``n_outputs_``), the versions of Python, torch, skorch,
scikit-learn and numpy, a fingerprint of the installed ``sk_ecprune`` source, and the data
(joblib hashes ``X``, ``y`` and the sample weights by content). A parameter added to the estimators later is part
of the key unless it is listed in :data:`PRUNING_STAGE_PARAMETERS`: an unknown setting can cost
a cache miss, never a wrong network.

Damaged entries. Each entry carries a SHA-256 digest of its payload and the hash of the key it
was computed for. An entry that cannot be read, fails the digest, belongs to another key or
does not fit the network is trained again (and rewritten) with a :class:`DenseCacheWarning`.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import os
import platform
import tempfile
import warnings
from pathlib import Path

import joblib
import numpy as np
import sklearn
import skorch
import torch
from skorch.history import History

from sklearn.utils.validation import check_memory

from ._build import build_net, validation_fraction
from ._data import net_inputs, to_tensor
from ._params import check_device, check_hidden_layer_sizes

__all__ = [
    "ENTRY_FORMAT",
    "PRUNING_STAGE_PARAMETERS",
    "DenseCacheWarning",
    "dense_spec",
    "fit_dense_cached",
    "train_dense",
]

#: Version of the layout of a cache entry; part of the key.
ENTRY_FORMAT = 2

#: Constructor parameters that act only after the dense training (pruning, fine-tuning,
#: printing, caching): grid points differing only in these share one cache entry. Every other
#: parameter is part of the key. Names that are not (yet) parameters of an estimator are
#: harmless; a new parameter that only acts after the dense stage belongs here.
PRUNING_STAGE_PARAMETERS = frozenset(
    {
        "prune_ratio",
        "method",
        "scope",
        "granularity",
        "prune_steps",
        "gradual",
        "layer_floor",
        "scoring_samples",
        "output_metric",
        "finetune_epochs",
        "quantize_bits",
        "quantize_method",
        "finetune_lr",
        "memory",
        "verbose",
    }
)

# Fitted attributes set by the data validation that the network is built from.
_FIT_ATTRIBUTES = ("n_features_in_", "n_outputs_", "classes_")


class DenseCacheWarning(UserWarning):
    """A ``memory`` entry of the dense stage could not be used; the network was retrained."""


# ------------------------------------------------------------------------------------ key
@functools.lru_cache(maxsize=None)
def _package_fingerprint():
    """SHA-256 of the source files of the installed ``sk_ecprune`` package."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]  # sk_ecprune/, engine and estimators alike
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _class_fingerprint(cls):
    """Qualified name of ``cls``, plus the source of the classes it adds to the package's.

    A subclass defined outside ``sk_ecprune`` can change how the network is built or
    trained; its source (where ``inspect`` can find it) is part of the key.
    """
    own = ("sk_ecprune.", "sklearn.", "skorch.", "torch.", "builtins")
    sources = []
    for klass in cls.__mro__:
        if klass.__module__.startswith(own) or klass.__module__ == "sk_ecprune":
            continue
        try:
            sources.append(inspect.getsource(klass))
        except (OSError, TypeError):
            sources.append(f"{klass.__module__}.{klass.__qualname__}")
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not sources:
        return name
    return name + ":" + hashlib.sha256("\0".join(sources).encode()).hexdigest()


def _environment():
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "skorch": skorch.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "sk_ecprune_source": _package_fingerprint(),
    }


def _network_code(estimator):
    """Fingerprints of the user's module and callback classes (their source, where
    ``inspect`` finds it): joblib hashes a class by its name alone, so editing the class of
    ``module=`` or of a callback must change the key through its source."""

    def code(value):
        if value is None:
            return None
        return _class_fingerprint(value if isinstance(value, type) else type(value))

    callbacks = getattr(estimator, "callbacks", None) or []
    return {
        "module": code(getattr(estimator, "module", None)),
        "callbacks": [code(item[1] if isinstance(item, (tuple, list)) else item)
                      for item in callbacks],
    }


def dense_spec(estimator, seed):
    """Everything besides the data that determines the dense network of ``estimator.fit``.

    Parameters
    ----------
    estimator : PrunedMLPRegressor or PrunedMLPClassifier
        An estimator whose data has been validated (``n_features_in_`` and ``classes_`` or
        ``n_outputs_`` are set).

    seed : int
        The seed ``fit`` derived from ``random_state``.

    Returns
    -------
    dict
        Plain data (strings, numbers, tuples, classes): the estimator class, the
        dense-stage parameters, the fitted attributes, the seed and the environment.
    """
    params = {
        name: value
        for name, value in estimator.get_params(deep=False).items()
        if name not in PRUNING_STAGE_PARAMETERS
    }
    # Canonical forms of the values fit canonicalises itself: (8, 8) and [8, 8] are one
    # network, "cuda" and torch.device("cuda") one device.
    if "hidden_layer_sizes" in params:
        params["hidden_layer_sizes"] = check_hidden_layer_sizes(params["hidden_layer_sizes"])
    if "device" in params:
        params["device"] = str(check_device(params["device"]))
    if not isinstance(params.get("random_state"), (int, np.integer)):
        params["random_state"] = int(seed)  # a RandomState instance: its draw is the seed
    if "validation_fraction" in params:  # None with early stopping is 0.1
        params["validation_fraction"] = validation_fraction(estimator)
    if params.get("n_iter_no_change", 0) is None and not params.get("early_stopping", True):
        # no stopping rule at all (every epoch runs): any tol trains one network
        params["tol"] = None
    fit_attributes = {
        name: getattr(estimator, name) for name in _FIT_ATTRIBUTES if hasattr(estimator, name)
    }
    return {
        "format": ENTRY_FORMAT,
        "estimator": _class_fingerprint(type(estimator)),
        "params": params,
        "code": _network_code(estimator),
        "fit_attributes": fit_attributes,
        "seed": int(seed),
        "environment": _environment(),
    }


# ------------------------------------------------------------------------- the cached call
def train_dense(spec, X, y, sample_weight=None, estimator_class=None, verbose=0):
    """Train the dense network described by ``spec`` on ``(X, y)``; return a cache entry.

    This is the function ``memory.cache`` wraps. It builds a twin of the estimator with the
    dense-stage parameters of ``spec``, and does exactly what the first stage of
    ``estimator.fit`` does: build the skorch net from ``spec["seed"]`` (its private
    generators) and fit it for ``max_epochs``. Torch's global random state is not used.

    Parameters
    ----------
    spec : dict
        From :func:`dense_spec`.

    X : ndarray of shape (n_samples, n_features), float32
        Validated training inputs.

    y : ndarray
        Training targets as the net receives them (float32 of shape (n_samples, n_outputs)
        for the regressor, int64 class codes for the classifier).

    sample_weight : ndarray of shape (n_samples,), float32, or None, default=None
        Validated sample weights; None for an unweighted fit.

    estimator_class : type
        The estimator class (not hashed by ``joblib.Memory``: ``spec`` names it).

    verbose : int, default=0
        Verbosity of the twin's skorch net (not hashed: it does not change the result).

    Returns
    -------
    dict
        ``{"format", "spec_hash", "sha256", "payload"}``: ``payload`` is a ``torch.save``
        serialisation of the module and optimizer state dicts (on the CPU), the history (a
        list of dicts), the module's training flag and the state of the batch-order
        generator after training; ``sha256`` its digest; ``spec_hash`` the ``joblib.hash`` of ``spec``.
    """
    twin = estimator_class(**spec["params"], verbose=verbose)
    for name, value in spec["fit_attributes"].items():
        setattr(twin, name, value)
    sizes = check_hidden_layer_sizes(twin.hidden_layer_sizes)
    device = check_device(twin.device)
    seed = spec["seed"]
    net = build_net(twin, sizes, device, seed, len(X))
    weights = None if sample_weight is None else to_tensor(sample_weight)
    net.fit(net_inputs(to_tensor(X), weights), to_tensor(y))
    content = {
        "module": {k: v.detach().cpu().clone() for k, v in net.module_.state_dict().items()},
        "optimizer": net.optimizer_.state_dict(),
        "history": [dict(epoch) for epoch in net.history],
        "training": bool(net.module_.training),
        "shuffle_rng": net.iterator_train__generator.get_state(),
    }
    buffer = io.BytesIO()
    torch.save(content, buffer)
    payload = buffer.getvalue()
    return {
        "format": ENTRY_FORMAT,
        "spec_hash": joblib.hash(spec),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": payload,
    }


def _restore(net, entry, spec_hash):
    """Load ``entry`` into the (built, not yet trained) skorch ``net``; raise if unusable.

    Sets the state of the net's batch-order generator to the one right after the dense
    training.
    """
    if not isinstance(entry, dict) or entry.get("format") != ENTRY_FORMAT:
        raise ValueError("not a dense-stage cache entry of this version")
    if entry.get("spec_hash") != spec_hash:
        raise ValueError("the entry was computed for other settings")
    payload = entry.get("payload")
    if not isinstance(payload, bytes) or hashlib.sha256(payload).hexdigest() != entry.get(
        "sha256"
    ):
        raise ValueError("the payload does not match its SHA-256 digest")
    content = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
    net.initialize()
    net.module_.load_state_dict(content["module"], strict=True)
    net.optimizer_.load_state_dict(content["optimizer"])
    net.module_.train(content["training"])
    net.history = History(content["history"])
    net.iterator_train__generator.set_state(content["shuffle_rng"])


def _location(memory):
    location = memory if isinstance(memory, str) else getattr(memory, "location", None)
    return f" in {location}" if location else ""


def fit_dense_cached(memory, estimator, net, X, y, seed, sample_weight=None):
    """Give ``net`` the trained dense network of ``estimator``, from ``memory`` if cached.

    A cache that cannot be used (a location that cannot be created or written, settings
    that cannot be hashed) costs a :class:`DenseCacheWarning` and a training without it,
    never the fit; a read-only location that holds the entry is read as usual.

    Parameters
    ----------
    memory : str, joblib.Memory or object with a joblib-like ``cache`` method
        The estimator's ``memory`` parameter.

    estimator : PrunedMLPRegressor or PrunedMLPClassifier
        The estimator being fitted (data validated).

    net : skorch.NeuralNet
        Its freshly built net (:func:`._build.build_net`), not initialised.

    X, y : torch.Tensor
        Training inputs and targets, on the CPU, as ``fit`` passes them to the net.

    seed : int
        The seed ``fit`` derived from ``random_state``.

    sample_weight : torch.Tensor or None, default=None
        The validated sample weights (on the CPU), part of the key; None: unweighted.

    Returns
    -------
    hit : bool or None
        True if the network came from the cache, False if it was trained (and stored), None
        if the settings cannot be hashed and the network was trained without the cache.

    Notes
    -----
    Loading sets the state of the net's batch-order generator to the one right after
    training, so that fine-tuning shuffles as it would after an uncached dense stage.
    """
    spec = dense_spec(estimator, seed)
    try:
        spec_hash = joblib.hash(spec)
    except Exception:  # e.g. a lambda as optimizer: no key, no cache
        culprits = []
        for name, value in spec["params"].items():
            try:
                joblib.hash(value)
            except Exception:
                culprits.append(f"{name}={value!r}")
        warnings.warn(
            f"memory: the settings of {type(estimator).__name__} cannot be hashed "
            f"({', '.join(culprits) or 'a fitted attribute'} cannot be pickled); the dense "
            "network is trained without the cache. Use picklable parameter values (for "
            "example a torch optimizer class or a module-level function, not a lambda).",
            DenseCacheWarning,
            stacklevel=5,
        )
        net.fit(net_inputs(X, sample_weight), y)
        return None
    try:
        return _fit_through_cache(
            check_memory(memory), estimator, net, (X, y, sample_weight), spec, spec_hash
        )
    except OSError as exc:  # no permission, read-only filesystem, a file in the path, ...
        warnings.warn(
            f"memory: the cache{_location(memory)} cannot be used ({type(exc).__name__}: "
            f"{exc}); the dense network of {type(estimator).__name__} is trained without "
            "it. Give memory a directory this process can write.",
            DenseCacheWarning,
            stacklevel=5,
        )
        net.fit(net_inputs(X, sample_weight), y)
        return None


def _fit_through_cache(memory, estimator, net, data, spec, spec_hash):
    """:func:`fit_dense_cached` once ``memory`` is a usable cache and the key is known."""
    X, y, weights = (None if a is None else a.cpu().numpy() for a in data)  # hashed by content
    args = (spec, X, y, weights)
    kwargs = {"estimator_class": type(estimator), "verbose": estimator.verbose}
    if isinstance(memory, joblib.Memory):
        cached = memory.cache(train_dense, ignore=["estimator_class", "verbose"])
    else:
        cached = memory.cache(train_dense)
    can_repair = hasattr(cached, "check_call_in_cache") and hasattr(cached, "call")

    problem = None
    if can_repair:
        if cached.check_call_in_cache(*args, **kwargs):
            try:
                _restore(net, cached.call_and_shelve(*args, **kwargs).get(), spec_hash)
                return True
            except Exception as exc:
                problem = exc
        if problem is None:
            _restore(net, _train_and_store(cached, memory, args, kwargs), spec_hash)
            return False
    else:  # a duck-typed memory: call it, and retrain without it if its result is unusable
        try:
            _restore(net, cached(*args, **kwargs), spec_hash)
            return True  # (or trained by the call: it cannot tell)
        except Exception as exc:
            problem = exc

    warnings.warn(
        f"memory: the cached dense network of {type(estimator).__name__}"
        f"{_location(memory)} could not be used ({type(problem).__name__}: {problem}); "
        "training it again" + (" and replacing the entry." if can_repair else "."),
        DenseCacheWarning,
        stacklevel=5,
    )
    if can_repair:
        entry = _train_and_store(cached, memory, args, kwargs)
    else:
        entry = train_dense(*args, **kwargs)
    _restore(net, entry, spec_hash)
    return False


def _train_and_store(cached, memory, args, kwargs):
    """Train the dense stage through ``cached`` (which stores it); return the entry.

    Raises OSError before training if the cache directory cannot be written: joblib would
    train, fail to store, and only warn of "a race condition".
    """
    location = getattr(memory, "location", None)
    if isinstance(location, (str, os.PathLike)):
        os.makedirs(location, exist_ok=True)
        with tempfile.TemporaryFile(dir=location):
            pass
    return cached.call(*args, **kwargs)[0]
