"""Building an estimator's skorch net: module, optimizer, data path, callbacks, generators.

One function, :func:`build_net`, used by ``fit`` and by the dense-stage cache (which builds
the same net for a twin of the estimator), so that both train exactly the same network.
"""

from __future__ import annotations

import functools
import inspect

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
    "early_stopping_callbacks",
    "has_fused_kernels",
    "validation_fraction",
]

#: Smallest batch for prediction and evaluation: outputs do not depend on it.
EVAL_BATCH_SIZE = 1024

#: The validation fraction of ``early_stopping=True`` with ``validation_fraction=None``
#: (scikit-learn's default).
EARLY_STOPPING_VALIDATION_FRACTION = 0.1


def build_net(estimator, hidden_layer_sizes, device, seed):
    """The (uninitialised) skorch net of ``estimator``'s settings, seeded by ``seed``.

    ``estimator`` has validated data (``n_features_in_`` and its outputs are known). The
    initial weights and the batch order come from private generators derived from
    ``seed``: a seeded fit neither reads nor changes torch's global generator, which
    threads share.
    """
    init_seed, shuffle_seed = np.random.SeedSequence(seed).generate_state(2)
    divergence = RaiseOnDivergence("the dense training", estimator._divergence_advice())
    n_features, n_outputs = estimator.n_features_in_, estimator._n_net_outputs
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
        batch_size=estimator.batch_size,
        iterator_train__shuffle=True,
        iterator_train__generator=torch.Generator().manual_seed(int(shuffle_seed)),
        iterator_valid__batch_size=max(estimator.batch_size, EVAL_BATCH_SIZE),
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

    The package's own (``own``, then early stopping's), the user's ``callbacks`` (fresh
    copies), the progress output of ``verbose``, then ``last``: the callback that holds
    removed weights at zero goes there, so that it acts after every other callback at the
    end of each batch.
    """
    return [
        *own,
        *early_stopping_callbacks(estimator),  # fresh ones: each stage stops on its own
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


def early_stopping_callbacks(estimator):
    """The named callbacks of ``early_stopping`` for one stage: none without it.

    A fresh :class:`~._callbacks.ValidationScore` (scikit-learn's validation score per
    epoch) and a :class:`~._callbacks.StopEarly` on the validation loss: ``patience`` is
    ``n_iter_no_change``, an improvement is a decrease by at least ``tol`` (absolute),
    and the best epoch's weights are restored when the stage ends.
    """
    if not estimator.early_stopping:
        return []
    stop = StopEarly(
        monitor="valid_loss",
        patience=estimator.n_iter_no_change,
        threshold=estimator.tol,
        threshold_mode="abs",
        lower_is_better=True,
        load_best=True,
        # its message ("Stopping since valid_loss has not improved ...") only with verbose
        sink=echo if estimator.verbose else discard,
    )
    return [("valid_score", ValidationScore(estimator._validation_score)),
            ("early_stopping", stop)]


def _train_split(estimator, seed):
    fraction = validation_fraction(estimator)
    if fraction is None:
        return None
    return ValidSplit(fraction, stratified=estimator._stratify, random_state=seed)


def _optimizer_options(estimator, device):
    """``optimizer`` and its ``optimizer__*`` options (the estimator's ``optimizer__*``
    parameters override the ones derived from ``weight_decay``)."""
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
    elif estimator.weight_decay:
        options["optimizer__weight_decay"] = estimator.weight_decay
    options["optimizer"] = optimizer
    options.update(nested_params(estimator, "optimizer__"))  # the user's word is the last
    return options


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
