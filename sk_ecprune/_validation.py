"""Parameter checks of the estimators that scikit-learn's constraint language cannot state."""

from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions

from .importance import SCORERS

__all__ = [
    "OPTIMIZERS",
    "RegisteredMethods",
    "check_device",
    "check_finite_float32",
    "check_hidden_layer_sizes",
    "check_optimizer",
    "to_tensor",
]

#: Optimizer name -> ``torch.optim`` class.
OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


class RegisteredMethods(StrOptions):
    """``StrOptions`` whose options are the scoring methods registered at check time.

    The registry :data:`sk_ecprune.importance.SCORERS` may grow after import (for example
    through :func:`sk_ecprune.importance.register_scorer`), so the valid names are read
    when a parameter is checked, not when the estimator class is defined.
    """

    def __init__(self):  # noqa: D107 - options are dynamic, nothing to store
        self.hidden = False
        self.type = str
        self.deprecated = set()

    @property
    def options(self):
        """Sorted names of the registered scoring methods."""
        return sorted(SCORERS)


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
    if isinstance(sizes, Integral):
        sizes = [sizes]
    sizes = list(np.asarray(sizes, dtype=object).ravel())
    bad = [s for s in sizes if not isinstance(s, Integral) or isinstance(s, bool) or s < 1]
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


def check_finite_float32(array, name):
    """Raise if ``array`` (already float32) holds values that overflowed to infinity."""
    if not np.isfinite(array).all():
        raise ValueError(
            f"Input {name} contains values too large for float32 (|value| > 3.4e38), "
            "which the network computes in; rescale it (e.g. StandardScaler)."
        )


def to_tensor(array):
    """Return a torch tensor for a C-contiguous numpy ``array`` without altering it.

    Read-only arrays (e.g. memory maps) are copied, since torch cannot wrap them safely.
    """
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)
