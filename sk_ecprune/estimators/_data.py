"""The estimators' data path: training data held as tensors, batches made by slicing.

skorch's default path wraps the data in :class:`skorch.dataset.Dataset` and loads it with a
:class:`torch.utils.data.DataLoader`, which indexes one sample at a time and collates the
samples into a batch: per batch, ``batch_size`` Python calls and a ``torch.stack``. For the
small, fast networks of tabular data that per-sample work costs more than the arithmetic.

This module plugs into skorch's public extension points instead of bypassing skorch:

* :class:`TensorDataset` (skorch's ``dataset``) converts ``X`` and ``y`` to tensors once, on
  the net's device (the nets' ``get_dataset`` passes it), sharing memory with C-contiguous
  numpy input where it can;
* :class:`TensorBatchIterator` (``iterator_train`` / ``iterator_valid``) makes each batch
  with one slice, or one ``index_select`` when shuffled or inside a validation
  :class:`torch.utils.data.Subset`.

``X`` may also be a dict of such arrays, skorch's way of giving a batch more than one input:
a fit with sample weights gives the net ``{"X": X, "sample_weight": w}``
(:func:`net_inputs`), whose batches are dicts of row slices, and the nets weight the loss
with them (:mod:`._net`).

The training step itself is in :mod:`._net` (public skorch API) and
:mod:`._skorch_internals` (what relies on skorch's and torch's internals). Measured in
``benchmarks/bench_training.py`` (numbers in ``benchmarks/README.md``).

Batches are *identical* to those of skorch's default path: the iterator draws its random
numbers from its ``generator`` (the estimators give it a private, seeded one) exactly as a
``DataLoader`` with a ``RandomSampler`` does (one draw for the loader's base seed, then the
sampler's permutation), so a seeded fit gives the same batches in the same order.
Anything else (a dataset the iterator does not know, ``num_workers``, a ``collate_fn``)
goes through a plain ``DataLoader``, as skorch would do.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np
import torch
from skorch.dataset import Dataset as SkorchDataset
from sklearn.utils.validation import check_array
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, Subset

__all__ = [
    "SAMPLE_WEIGHT",
    "TensorBatchIterator",
    "TensorDataset",
    "check_finite_float32",
    "check_sample_weight",
    "net_inputs",
    "to_tensor",
]

#: Key of the sample weights in the dict ``X`` a weighted fit gives the net; ``"X"`` holds
#: the inputs.
SAMPLE_WEIGHT = "sample_weight"

#: Most bytes gathered at once for shuffled batches: the iterator gathers the rows of many
#: batches with one ``index_select`` and slices the batches from that block, which costs
#: one operation per block instead of two per batch and bounds the extra memory.
_GATHER_BYTES = 1 << 24


def _as_device_tensor(data, device):
    """``data`` as a tensor on ``device``, without a copy where none is needed.

    A dict of such data becomes a dict of tensors. Returns None for data that are neither
    tensors nor numeric numpy arrays (pandas, sparse matrices, ...), or a dict holding any:
    those keep skorch's per-sample path.
    """
    if isinstance(data, Mapping):
        tensors = {key: _as_device_tensor(value, device) for key, value in data.items()}
        if not tensors or any(t is None for t in tensors.values()):
            return None
        if len({len(t) for t in tensors.values()}) != 1:
            raise ValueError(
                "The arrays of X have inconsistent lengths: "
                + ", ".join(f"{key}: {len(t)}" for key, t in tensors.items())
            )
        return tensors
    if isinstance(data, torch.Tensor):
        tensor = data.detach()
    elif isinstance(data, np.ndarray) and data.dtype.kind in "biuf":
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        if not data.flags.writeable:  # memory maps: torch cannot wrap them safely
            data = data.copy()
        tensor = torch.from_numpy(data)  # shares memory
    else:
        return None
    if tensor.ndim == 0:
        return None
    return tensor if device is None else tensor.to(device)


class TensorDataset(SkorchDataset):
    """skorch's :class:`~skorch.dataset.Dataset`, holding ``X`` and ``y`` as device tensors.

    When ``X`` (and ``y``, if given) are tensors or numeric numpy arrays, they are converted
    once: numpy input is wrapped with :func:`torch.from_numpy` (no copy when it is
    C-contiguous and writeable) and moved to ``device`` (no copy when it is already there).
    Any other input is stored as :class:`skorch.dataset.Dataset` stores it, and is then
    batched by a ``DataLoader``.

    Parameters
    ----------
    X : tensor, ndarray or anything skorch's ``Dataset`` accepts
    y : tensor, ndarray, anything skorch's ``Dataset`` accepts, or None
    length : int or None, default=None
        As for skorch's ``Dataset``.
    device : str, torch.device or None, default=None
        Where the tensors are kept (the net's device). None leaves them where they are.

    Attributes
    ----------
    is_tensor : bool
        Whether ``X`` and ``y`` are held as tensors (the slicing path applies).
    """

    def __init__(self, X, y=None, length=None, device=None):
        X_t = _as_device_tensor(X, device)
        y_t = None if y is None else _as_device_tensor(y, device)
        self.is_tensor = X_t is not None and (y is None or y_t is not None)
        if self.is_tensor:
            if y_t is not None and len(y_t) != _n_rows(X_t):
                raise ValueError(
                    f"X and y have inconsistent lengths: {_n_rows(X_t)} and {len(y_t)}."
                )
            X, y = X_t, y_t
        super().__init__(X, y, length=length)


def _n_rows(data):
    """Rows of a tensor, or of the tensors of a dict."""
    if isinstance(data, Mapping):
        return len(next(iter(data.values())))
    return len(data)


def _rows(data, start, stop):
    """Rows ``start:stop`` of a tensor (a view), or of each tensor of a dict."""
    if isinstance(data, Mapping):
        return {key: value[start:stop] for key, value in data.items()}
    return data[start:stop]


def _gather(data, index):
    """Rows ``index`` of a tensor, or of each tensor of a dict (one ``index_select`` each)."""
    if isinstance(data, Mapping):
        return {key: value.index_select(0, index) for key, value in data.items()}
    return data.index_select(0, index)


def _device(data):
    if isinstance(data, Mapping):
        return next(iter(data.values())).device
    return data.device


def _row_bytes(data):
    if isinstance(data, Mapping):
        return sum(_row_bytes(value) for value in data.values())
    return max(1, data[:1].numel() * data.element_size())


def _tensor_source(dataset):
    """``(X, y, indices)`` for datasets the slicing iterator handles, else None.

    ``indices`` (an int64 tensor on ``X``'s device) is None for the whole dataset, and the
    subset's indices for a :class:`~torch.utils.data.Subset` of a tensor dataset (what
    skorch's ``ValidSplit`` makes).
    """
    indices = None
    if isinstance(dataset, Subset):
        indices = dataset.indices
        dataset = dataset.dataset
    if not (isinstance(dataset, TensorDataset) and dataset.is_tensor):
        return None
    if len(dataset) != _n_rows(dataset.X):  # an explicit ``length`` that disagrees
        return None
    X, y = dataset.X, dataset.y
    if indices is not None:
        indices = torch.as_tensor(np.asarray(indices), dtype=torch.int64).to(_device(X))
    return X, y, indices


class TensorBatchIterator:
    """skorch ``iterator_train`` / ``iterator_valid`` that slices batches from tensors.

    For a :class:`TensorDataset` holding tensors (or a ``Subset`` of one), a batch is
    ``X[start:stop]`` (a view) or, when shuffled or in a subset, a slice of a block of
    rows gathered with one ``index_select`` (at most 16 MiB per block); no per-sample
    call, no collation. The batches, their order and the
    random numbers drawn are those of ``DataLoader(dataset, batch_size, shuffle,
    drop_last)``. Any other dataset, or any other option, is handed to that
    ``DataLoader``.

    Parameters
    ----------
    dataset : torch Dataset
    batch_size : int, default=1
    shuffle : bool, default=False
        Reshuffle at every pass, with a permutation drawn from ``generator``.
    drop_last : bool, default=False
    generator : torch.Generator or None, default=None
        As ``DataLoader``'s: the source of the permutations (and of the loader's base
        seed). None draws them through torch's global generator.
    **kwargs
        Further ``DataLoader`` options; giving any makes the iterator use a ``DataLoader``.

    Attributes
    ----------
    sampler : torch.utils.data.Sampler
        The sampler whose order the batches follow, as ``DataLoader.sampler``:
        ``RandomSampler`` when shuffled, else ``SequentialSampler``.
    """

    def __init__(
        self, dataset, batch_size=1, shuffle=False, drop_last=False, generator=None, **kwargs
    ):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator
        self.loader_options = kwargs
        self._source = None if kwargs else _tensor_source(dataset)
        self._loader = None
        if self._source is None:
            self._loader = DataLoader(
                dataset,
                batch_size=batch_size,
                shuffle=shuffle,
                drop_last=drop_last,
                generator=generator,
                **kwargs,
            )
            self.sampler = self._loader.sampler
        else:
            # The order the batches follow, as a DataLoader would hold it; the slicing
            # path draws the same permutation directly as a tensor.
            self.sampler = (
                RandomSampler(dataset, generator=generator)
                if self.shuffle
                else SequentialSampler(dataset)
            )

    @property
    def uses_dataloader(self):
        """Whether batches come from a ``DataLoader`` (skorch's default path)."""
        return self._loader is not None

    def _n_samples(self):
        X, _, indices = self._source
        return _n_rows(X) if indices is None else len(indices)

    def __len__(self):
        if self._loader is not None:
            return len(self._loader)
        n = self._n_samples()
        if self.drop_last:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def __iter__(self):
        if self._loader is not None:
            return iter(self._loader)
        return self._batches()

    def _batches(self):
        X, y, indices = self._source
        n = self._n_samples()
        # The random numbers a DataLoader draws: its base seed (drawn even without
        # shuffling), then the RandomSampler's permutation, from the loader's generator or,
        # without one, through a seed drawn from torch's global generator.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        order = indices
        if self.shuffle:
            generator = self.generator
            if generator is None:
                seed = int(torch.empty((), dtype=torch.int64).random_().item())
                generator = torch.Generator()
                generator.manual_seed(seed)
            perm = torch.randperm(n, generator=generator).to(_device(X))
            if self.generator is not None:
                # RandomSampler, read to its end, draws a second (empty) permutation for
                # the remainder: with a shared generator that draw moves the next epoch's
                torch.randperm(n, generator=generator)
            order = perm if indices is None else indices[perm]
        bs = self.batch_size
        stop_at = n - n % bs if self.drop_last else n
        if order is None:
            for start in range(0, stop_at, bs):
                stop = min(start + bs, stop_at)
                yield _rows(X, start, stop), None if y is None else y[start:stop]
            return
        # Gather whole blocks of batches, then slice: the same batches, fewer operations.
        row_bytes = _row_bytes(X) + (0 if y is None else _row_bytes(y))
        block = max(1, _GATHER_BYTES // (row_bytes * bs)) * bs
        for first in range(0, stop_at, block):
            index = order[first : min(first + block, stop_at)]
            X_block = _gather(X, index)
            y_block = None if y is None else y.index_select(0, index)
            for start in range(0, len(index), bs):
                stop = start + bs
                yield _rows(X_block, start, stop), None if y is None else y_block[start:stop]


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


def check_sample_weight(sample_weight, n_samples):
    """``sample_weight`` checked as scikit-learn checks it, as float32; None stays None.

    A number gives every row that weight. Anything else must be array-like of shape
    ``(n_samples,)`` holding finite (in float64), non-negative numbers, not all zero. They
    are returned normalised to mean 1: only their ratios matter. The caller's array is
    never modified.

    Raises
    ------
    ValueError
        Naming what is wrong: the shape, NaN or infinity, a negative weight, or weights
        that are all zero.
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight, dtype=np.float64)
    weights = check_array(
        sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight"
    )
    if weights.shape != (n_samples,):
        raise ValueError(
            f"sample_weight.shape == {weights.shape}, expected ({n_samples},): one weight "
            "per row of X."
        )
    if (weights < 0).any():
        raise ValueError("Negative values in data passed to sample_weight.")
    if not weights.max() > 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")
    # Every use of the weights is a weighted mean, which does not depend on their scale:
    # normalised to mean 1 (in float64, by the largest first so that nothing overflows),
    # w and c * w give the same fit for every positive c, and float32 neither overflows
    # nor underflows (a batch weight sum of uniform 1e-40 weights would be subnormal).
    weights = weights / weights.max()
    weights = (weights / weights.mean()).astype(np.float32)
    if not weights.sum(dtype=np.float64) > 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return weights


def net_inputs(X, sample_weight):
    """What the net is fitted on: ``X`` itself, or ``{"X": X, "sample_weight": w}``.

    Without weights the net sees exactly the tensor it always saw (unweighted fits take
    the unweighted code path, bit for bit).
    """
    if sample_weight is None:
        return X
    return {"X": X, SAMPLE_WEIGHT: sample_weight}
