"""Building an estimator's skorch net: module, optimizer, data path, callbacks, generators.

One function, :func:`build_net`, used by ``fit`` and by the dense-stage cache (which builds
the same net for a twin of the estimator), so that both train exactly the same network.
"""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np
import torch
from skorch.dataset import ValidSplit

from ..engine import MLP
from ._callbacks import RaiseOnDivergence, StopEarly, ValidationScore
from ._data import TensorBatchIterator, TensorDataset
from ._net import net_class
from ._network import build_module, nested_params, user_callbacks
from ._params import OPTIMIZERS
from ._progress import discard, echo, progress_callbacks

__all__ = [
    "EVAL_BATCH_SIZE",
    "stage_callbacks",
    "build_net",
    "effective_batch_size",
    "stopping_callbacks",
    "has_fused_kernels",
    "validation_fraction",
    "validation_rows",
]

#: Smallest batch for prediction and evaluation: outputs do not depend on it.
EVAL_BATCH_SIZE = 1024

#: The validation fraction of ``early_stopping=True`` with ``validation_fraction=None``
#: (scikit-learn's default).
EARLY_STOPPING_VALIDATION_FRACTION = 0.1

#: ``batch_size="auto"`` is ``min(AUTO_BATCH_SIZE, n_training_rows)``, as scikit-learn's MLP.
AUTO_BATCH_SIZE = 200

#: How ``tol`` compares losses: ``"rel"`` (an improvement is a decrease by at least ``tol``
#: times the best loss so far) or ``"abs"`` (by ``tol`` itself, scikit-learn's rule). Relative,
#: because the losses of the package's users span orders of magnitude (a PDE surrogate's MSE
#: is about 1e-4: an absolute 1e-4 stops it long before it converges); a module constant so
#: that the benchmark can measure the other rule (``benchmarks/bench_defaults.py``).
TOL_MODE = "rel"


def build_net(estimator, hidden_layer_sizes, device, seed, n_samples):
    """The (uninitialised) skorch net of ``estimator``'s settings, seeded by ``seed``.

    ``estimator`` has validated data (``n_features_in_`` and its outputs are known);
    ``n_samples`` rows are given to the net (``batch_size="auto"`` depends on it). The
    initial weights and the batch order come from private generators derived from
    ``seed``: a seeded fit neither reads nor changes torch's global generator, which
    threads share.
    """
    init_seed, shuffle_seed = np.random.SeedSequence(seed).generate_state(2)
    divergence = RaiseOnDivergence("the dense training", estimator._divergence_advice())
    n_features, n_outputs = estimator.n_features_in_, estimator._n_net_outputs
    batch_size = effective_batch_size(estimator, n_samples)
    module = build_module(
        estimator, n_features, n_outputs, init_seed,
        default=lambda: MLP(n_features, n_outputs, hidden_layer_sizes, estimator.activation,
                            random_state=int(init_seed)),
    )
    return net_class(estimator._is_classifier_net)(
        module=module,  # an instance: skorch uses it as it is
        criterion=estimator._criterion,
        lr=estimator.lr,
        max_epochs=estimator.max_epochs,
        batch_size=batch_size,
        iterator_train__shuffle=True,
        iterator_train__generator=torch.Generator().manual_seed(int(shuffle_seed)),
        iterator_valid__batch_size=max(batch_size, EVAL_BATCH_SIZE),
        # a loader draws a base seed even when it does not shuffle (validation,
        # prediction): from a generator of its own, not torch's global one
        iterator_valid__generator=torch.Generator().manual_seed(0),
        train_split=_train_split(estimator, seed),
        callbacks=stage_callbacks(
            estimator, [("raise_on_divergence", divergence)], "dense training",
            estimator.max_epochs,
        ),
        # skorch's PrintLog captured builtins.print at import: never used, verbose or not
        callbacks__print_log=None,
        verbose=0,  # skorch's own messages ("Re-initializing optimizer") are not shown
        device=str(device),
        **nested_params(estimator, "callbacks__"),
        **_data_path_options(),
        **_optimizer_options(estimator, device),
    )


def stage_callbacks(estimator, own, stage, epochs, last=()):
    """The callbacks of one training stage, in the order they run.

    The package's own (``own``, then the stopping rule's), the user's ``callbacks`` (fresh
    copies), the progress output of ``verbose``, then ``last``: the callback that holds
    removed weights at zero goes there, so that it acts after every other callback at the
    end of each batch.
    """
    return [
        *own,
        *stopping_callbacks(estimator),  # fresh ones: each stage stops on its own
        *user_callbacks(estimator),
        *progress_callbacks(estimator.verbose, stage, epochs),
        *last,
    ]


def _data_path_options():
    """The tensor data path (:mod:`._data`): data held as tensors, batches sliced.

    The batches are those of skorch's default path (``Dataset`` and ``DataLoader``), which
    an empty dict gives instead.
    """
    return {
        "dataset": TensorDataset,
        "iterator_train": TensorBatchIterator,
        "iterator_valid": TensorBatchIterator,
    }


def validation_fraction(estimator):
    """The fraction of the rows held out: ``validation_fraction``, or with
    ``early_stopping`` and ``validation_fraction=None`` scikit-learn's 0.1; None: no split."""
    if estimator.validation_fraction is None and estimator.early_stopping:
        return EARLY_STOPPING_VALIDATION_FRACTION
    return estimator.validation_fraction


def validation_rows(estimator, n_samples):
    """How many of ``n_samples`` rows the validation split holds out (0 without one):
    ``ceil(fraction * n_samples)``, as skorch's split counts them."""
    fraction = validation_fraction(estimator)
    return int(np.ceil(fraction * n_samples)) if fraction else 0


def effective_batch_size(estimator, n_samples):
    """The mini-batch size of the training: ``batch_size``, or for ``"auto"``
    ``min(200, n_train)`` with ``n_train`` the rows left after the validation split (as
    scikit-learn's MLP counts them)."""
    if estimator.batch_size != "auto":
        return int(estimator.batch_size)
    n_train = n_samples - validation_rows(estimator, n_samples)
    return max(1, min(AUTO_BATCH_SIZE, n_train))


def stopping_callbacks(estimator):
    """The named callbacks of the stopping rule for one stage.

    With ``early_stopping``: a fresh :class:`~._callbacks.ValidationScore` (scikit-learn's
    validation score per epoch) and a :class:`~._callbacks.StopEarly` on the validation
    loss, whose best epoch's weights are restored when the stage ends. Without it, a
    :class:`~._callbacks.StopEarly` on the training loss (scikit-learn's rule without early
    stopping; the last epoch's weights are kept). Either stops after ``n_iter_no_change``
    epochs in a row without a decrease of at least ``tol`` relative to the best loss
    (:data:`TOL_MODE`); ``n_iter_no_change=None`` never stops (every epoch runs), and with
    ``early_stopping`` still restores the best epoch.
    """
    patience = math.inf if estimator.n_iter_no_change is None else estimator.n_iter_no_change
    if not estimator.early_stopping and patience == math.inf:
        return []
    stop = StopEarly(
        monitor="valid_loss" if estimator.early_stopping else "train_loss",
        patience=patience,
        threshold=estimator.tol,
        threshold_mode=TOL_MODE,
        lower_is_better=True,
        load_best=bool(estimator.early_stopping),
        # its message ("Stopping since valid_loss has not improved ...") only with verbose
        sink=echo if estimator.verbose else discard,
    )
    if not estimator.early_stopping:
        return [("stop_on_train_loss", stop)]
    return [("valid_score", ValidationScore(estimator._validation_score)),
            ("early_stopping", stop)]


def _train_split(estimator, seed):
    fraction = validation_fraction(estimator)
    if fraction is None:
        return None
    return ValidSplit(fraction, stratified=estimator._stratify, random_state=seed)


def _optimizer_options(estimator, device):
    """``optimizer`` and its ``optimizer__*`` options (the estimator's ``optimizer__*``
    parameters override the ones derived from ``weight_decay``).

    A callable that is not a name receives ``weight_decay`` only where it takes an argument
    of that name (a ``torch.optim`` class, a ``functools.partial`` of one): a factory
    ``lambda params, lr: ...`` sets its own penalty.
    """
    optimizer = estimator.optimizer
    options = {}
    if isinstance(optimizer, str):
        optimizer = OPTIMIZERS[optimizer]
        options["optimizer__weight_decay"] = estimator.weight_decay
        if has_fused_kernels(optimizer, device.type):
            # one kernel per step for all parameters instead of one per tensor and
            # operation: on small networks the optimizer step costs as much as the
            # forward and backward passes together
            options["optimizer__fused"] = True
    elif estimator.weight_decay and _takes_argument(optimizer, "weight_decay"):
        options["optimizer__weight_decay"] = estimator.weight_decay
    options["optimizer"] = optimizer
    options.update(nested_params(estimator, "optimizer__"))  # the user's word is the last
    return options


def _takes_argument(function, name):
    """Whether ``function(..., name=...)`` is accepted, by its signature (True when unknown)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


@functools.lru_cache(maxsize=None)
def has_fused_kernels(optimizer_class, device_type: str) -> bool:
    """Whether ``optimizer_class(..., fused=True)`` can step a parameter on ``device_type``.

    Fused kernels exist for Adam and AdamW on CUDA since torch 2.0 and on the CPU since
    torch 2.4, for SGD since torch 2.3/2.4; asked once per class and device, by trying.
    """
    if "fused" not in inspect.signature(optimizer_class).parameters:
        return False
    try:
        param = torch.zeros(1, device=device_type, requires_grad=True)
        param.grad = torch.zeros_like(param)
        optimizer_class([param], lr=1e-3, fused=True).step()
    except (RuntimeError, TypeError, ValueError):
        return False
    return True
