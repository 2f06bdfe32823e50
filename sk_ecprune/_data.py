"""The estimators' data path: training data held as tensors, batches made by slicing.

skorch's default path wraps the data in :class:`skorch.dataset.Dataset` and loads it with a
:class:`torch.utils.data.DataLoader`, which indexes one sample at a time and collates the
samples into a batch: per batch, ``batch_size`` Python calls and a ``torch.stack``. For the
small, fast networks of tabular data that per-sample work costs more than the arithmetic.

This module plugs into skorch's own extension points instead of bypassing skorch:

* :class:`TensorDataset` (skorch's ``dataset``) converts ``X`` and ``y`` to tensors once, on
  the net's device (:meth:`TensorNetMixin.get_dataset` passes it), sharing memory with
  C-contiguous numpy input where it can;
* :class:`TensorBatchIterator` (``iterator_train`` / ``iterator_valid``) makes each batch
  with one slice, or one ``index_select`` when shuffled or inside a validation
  :class:`torch.utils.data.Subset`;
* :class:`TensorNetMixin` (``train_step``, ``run_single_epoch``) takes one optimizer
  step without the closure machinery that only multi-evaluation optimizers (LBFGS) need,
  and without per-batch bookkeeping that changes nothing (re-setting training mode,
  calling callback methods that are no-ops, torch's profiler scopes around
  ``zero_grad`` and Adam's ``step``); on an accelerator it reads the batch losses once
  per pass instead of synchronising after every batch.

Measured in ``benchmarks/bench_training.py`` (numbers in ``benchmarks/README.md``).

Batches are *identical* to those of skorch's default path: the iterator draws its random
numbers from its ``generator`` (the estimators give it a private, seeded one) exactly as a
``DataLoader`` with a ``RandomSampler`` does (one draw for the loader's base seed, then the
sampler's permutation), so a seeded fit gives the same batches in the same order.
Anything else (a dataset the iterator does not know, ``num_workers``, a ``collate_fn``)
goes through a plain ``DataLoader``, as skorch would do.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from skorch import NeuralNet, NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import Callback
from skorch.dataset import Dataset as SkorchDataset
from skorch.dataset import get_len, unpack_data
from skorch.history import History
from skorch.utils import TeeGenerator, is_dataset
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, Subset

__all__ = [
    "TensorBatchIterator",
    "TensorDataset",
    "TensorNetClassifier",
    "TensorNetMixin",
    "TensorNetRegressor",
    "fast_net_class",
]

#: Most bytes gathered at once for shuffled batches: the iterator gathers the rows of many
#: batches with one ``index_select`` and slices the batches from that block, which costs
#: one operation per block instead of two per batch and bounds the extra memory.
_GATHER_BYTES = 1 << 24


def _as_device_tensor(data, device):
    """``data`` as a tensor on ``device``, without a copy where none is needed.

    Returns None for data that are neither tensors nor numeric numpy arrays (dicts, pandas,
    sparse matrices, ...): those keep skorch's per-sample path.
    """
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
            if y_t is not None and len(y_t) != len(X_t):
                raise ValueError(
                    f"X and y have inconsistent lengths: {len(X_t)} and {len(y_t)}."
                )
            X, y = X_t, y_t
        super().__init__(X, y, length=length)


def _row_bytes(tensor):
    return max(1, tensor[:1].numel() * tensor.element_size())


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
    if len(dataset) != len(dataset.X):  # an explicit ``length`` that disagrees
        return None
    X, y = dataset.X, dataset.y
    if indices is not None:
        indices = torch.as_tensor(np.asarray(indices), dtype=torch.int64).to(X.device)
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
        return len(X) if indices is None else len(indices)

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
            perm = torch.randperm(n, generator=generator).to(X.device)
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
                yield X[start:stop], None if y is None else y[start:stop]
            return
        # Gather whole blocks of batches, then slice: the same batches, fewer operations.
        row_bytes = _row_bytes(X) + (0 if y is None else _row_bytes(y))
        block = max(1, _GATHER_BYTES // (row_bytes * bs)) * bs
        for first in range(0, stop_at, block):
            index = order[first : min(first + block, stop_at)]
            X_block = X.index_select(0, index)
            y_block = None if y is None else y.index_select(0, index)
            for start in range(0, len(index), bs):
                stop = start + bs
                yield X_block[start:stop], None if y is None else y_block[start:stop]


_ADAM_ARGUMENTS = frozenset(
    "params grads exp_avgs exp_avg_sqs max_exp_avg_sqs state_steps foreach capturable "
    "differentiable fused grad_scale found_inf has_complex decoupled_weight_decay amsgrad "
    "beta1 beta2 lr weight_decay eps maximize".split()
)


def _functional_adam():
    """``torch.optim.adam.adam`` if its signature is the one :func:`_adam_step` calls."""
    try:
        from torch.optim import optimizer as optimizer_module
        from torch.optim.adam import adam

        hooks = (
            optimizer_module._global_optimizer_pre_hooks,
            optimizer_module._global_optimizer_post_hooks,
        )
        if set(inspect.signature(adam).parameters) != _ADAM_ARGUMENTS:
            return None, None, ()
        return adam, inspect.unwrap(torch.optim.Adam.step), hooks
    except Exception:  # another torch: always use optimizer.step()
        return None, None, ()


_ADAM, _ADAM_STEP, _GLOBAL_STEP_HOOKS = _functional_adam()


def _adam_step(optimizer):
    """``optimizer.step()`` for Adam and AdamW, through torch's functional ``adam``.

    ``Optimizer.step`` spends more time around the update than in it on small networks
    (profiler scope, hook dispatch, gathering the state lists); this makes the same call
    of ``torch.optim.adam.adam`` with the same arguments that ``Adam.step`` makes, so the
    update is bit for bit the same. It applies only when that is certain: ``Adam.step``
    (or AdamW's, which is Adam's) unchanged, the functional signature this code was
    written against, no step hooks, state already initialised (the first step goes
    through ``optimizer.step()``), no ``differentiable``/``capturable`` options, dense
    gradients. Returns False, having done nothing, in every other case.
    """
    if _ADAM is None or inspect.unwrap(type(optimizer).step) is not _ADAM_STEP:
        return False
    if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
        return False
    if any(_GLOBAL_STEP_HOOKS):
        return False
    calls = []
    for group in optimizer.param_groups:
        if group["differentiable"] or group["capturable"]:
            return False
        params = [p for p in group["params"] if p.grad is not None]
        states = [optimizer.state.get(p) for p in params]
        if any(not state or p.grad.is_sparse for p, state in zip(params, states)):
            return False
        calls.append((group, params, states))
    with torch.no_grad():
        for group, params, states in calls:
            beta1, beta2 = group["betas"]
            _ADAM(
                params,
                [p.grad for p in params],
                [state["exp_avg"] for state in states],
                [state["exp_avg_sq"] for state in states],
                [state["max_exp_avg_sq"] for state in states] if group["amsgrad"] else [],
                [state["step"] for state in states],
                amsgrad=group["amsgrad"],
                has_complex=any(torch.is_complex(p) for p in params),
                beta1=beta1,
                beta2=beta2,
                lr=group["lr"],
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=group["maximize"],
                foreach=group["foreach"],
                capturable=group["capturable"],
                differentiable=group["differentiable"],
                fused=group["fused"],
                grad_scale=getattr(optimizer, "grad_scale", None),
                found_inf=getattr(optimizer, "found_inf", None),
                decoupled_weight_decay=group["decoupled_weight_decay"],
            )
    return True


class TensorNetMixin:
    """skorch net mixin: the same training step with less Python per batch.

    * ``train_step``: skorch wraps the forward and backward passes in a closure and a step
      accumulator, which optimizers that evaluate the loss several times per step (LBFGS)
      need. For Adam, AdamW and SGD (one evaluation per step) the plain sequence -- zero
      the gradients, forward, backward, ``on_grad_computed``, step -- is the same update.
      Any other optimizer class keeps skorch's ``train_step``. Adam and AdamW steps go
      through torch's functional ``adam`` where that is provably the same call
      (:func:`_adam_step`).
    * ``on_grad_computed`` is only announced when the net or a callback listens to it
      (overrides the no-op); its ``named_parameters`` generator is not built otherwise.
    * ``_zero_grad_optimizer`` sets the gradients to None itself (what
      ``optimizer.zero_grad()`` does), without torch's per-call profiler scope and
      TorchDynamo guard.
    * ``train_step_single`` puts the modules in training mode only when one of the net's
      top-level modules or criteria is not in it (after a validation or prediction
      pass), instead of walking every module tree before every batch.
    * ``run_single_epoch`` writes the same history as skorch's and calls the same
      callbacks, but skips the batch-level callback methods that are skorch's no-ops and
      reads the batch size with ``len`` for tensors. On an accelerator (any device but the
      CPU) it also reads the batch losses once per pass: skorch's per-batch ``.item()``
      makes the host wait for the device after every batch, so it cannot queue the next
      one while the device computes. The history then receives the floats at the end of
      the pass (during ``on_batch_end`` it holds the batch's loss as a 0-d tensor);
      callbacks reading it at the end of the epoch see the same values.
    """

    _single_evaluation_optimizers = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)

    #: Read batch losses once per pass instead of once per batch; None: on accelerators.
    defer_batch_losses = None

    def get_dataset(self, X, y=None):
        """skorch's ``get_dataset``; a :class:`TensorDataset` is put on the net's device.

        The device is the net's at call time (not a stored option), so that a net
        unpickled onto the CPU (skorch moves it there when CUDA is missing) keeps its
        data there too.
        """
        dataset = self.dataset
        if (
            is_dataset(X)
            or not isinstance(dataset, type)
            or not issubclass(dataset, TensorDataset)
        ):
            return super().get_dataset(X, y)
        kwargs = self.get_params_for("dataset")
        kwargs.setdefault("device", self.device)
        return dataset(X, y, **kwargs)

    def train_step(self, batch, **fit_params):
        """One optimization step on ``batch``; see :meth:`skorch.NeuralNet.train_step`."""
        optimizers = [getattr(self, name + "_") for name in self._optimizers]
        if not all(type(o) in self._single_evaluation_optimizers for o in optimizers):
            return super().train_step(batch, **fit_params)
        self._zero_grad_optimizer()
        step = self.train_step_single(batch, **fit_params)
        if self._listens_to_grads():
            self.notify(
                "on_grad_computed",
                named_parameters=TeeGenerator(self.get_all_learnable_params()),
                batch=batch,
                training=True,
            )
        for optimizer in optimizers:
            if not _adam_step(optimizer):
                optimizer.step()
        return step

    def train_step_single(self, batch, **fit_params):
        """Forward, loss and backward on ``batch``; see skorch's ``train_step_single``."""
        if not self._all_in_mode(True):
            self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        loss.backward()
        return {"loss": loss, "y_pred": y_pred}

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """One pass over ``iterator``; see :meth:`skorch.NeuralNet.run_single_epoch`.

        Writes the same history and calls the same callbacks as skorch's loop: only the
        ones that override ``on_batch_begin`` / ``on_batch_end`` (the others are no-ops).
        """
        if iterator is None or type(self.history) is not History:
            return super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
        defer = self.defer_batch_losses
        if defer is None:
            defer = torch.device(self.device).type != "cpu"
        on_begin = self._listeners("on_batch_begin")
        on_end = self._listeners("on_batch_end")
        loss_key, size_key = prefix + "_loss", prefix + "_batch_size"
        records, losses = [], []
        n_batches = 0
        for batch in iterator:
            for listener in on_begin:
                listener(self, batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            record = self.history[-1]["batches"][-1]  # the one on_batch_begin opened
            if defer:
                loss = step["loss"].detach()
                records.append(record)
                losses.append(loss)
                record[loss_key] = loss
            else:
                record[loss_key] = step["loss"].item()
            Xi = batch[0] if isinstance(batch, (tuple, list)) else batch
            record[size_key] = len(Xi) if isinstance(Xi, torch.Tensor) else get_len(Xi)
            for listener in on_end:
                listener(self, batch=batch, training=training, **step)
            n_batches += 1
        if losses:
            for record, value in zip(records, torch.stack(losses).tolist()):
                record[loss_key] = value
        self.history.record(prefix + "_batch_count", n_batches)

    def _listeners(self, method_name):
        """The bound ``method_name`` of the net and of the callbacks that override it."""
        base = getattr(Callback, method_name)
        listeners = []
        if getattr(type(self), method_name) is not getattr(NeuralNet, method_name) or (
            method_name == "on_batch_begin"  # NeuralNet's own opens the history's batch
        ):
            listeners.append(getattr(self, method_name))
        for _, cb in self.callbacks_:
            if getattr(type(cb), method_name, base) is not base:
                listeners.append(getattr(cb, method_name))
        return listeners

    def _zero_grad_optimizer(self, set_to_none=None):
        """Set the gradients to None, as ``optimizer.zero_grad()`` does by default.

        The same effect without the profiler scope and the TorchDynamo guard that
        ``torch.optim.Optimizer.zero_grad`` adds to every call; zeroing in place
        (``set_to_none=False``) is left to torch.
        """
        if set_to_none is False:
            return super()._zero_grad_optimizer(set_to_none=set_to_none)
        for name in self._optimizers:
            for group in getattr(self, name + "_").param_groups:
                for param in group["params"]:
                    param.grad = None

    def _all_in_mode(self, training):
        for name in self._modules + self._criteria:
            module = getattr(self, name + "_", None)
            if isinstance(module, torch.nn.Module) and module.training != training:
                return False
        return True

    def _listens_to_grads(self):
        if type(self).on_grad_computed is not NeuralNet.on_grad_computed:
            return True
        return any(
            type(cb).on_grad_computed is not Callback.on_grad_computed
            for _, cb in self.callbacks_
        )


class TensorNetRegressor(TensorNetMixin, NeuralNetRegressor):
    """:class:`skorch.NeuralNetRegressor` with :class:`TensorNetMixin`'s training loop."""


class TensorNetClassifier(TensorNetMixin, NeuralNetClassifier):
    """:class:`skorch.NeuralNetClassifier` with :class:`TensorNetMixin`'s training loop."""


_FAST_NETS = {NeuralNetRegressor: TensorNetRegressor, NeuralNetClassifier: TensorNetClassifier}


def fast_net_class(net_class):
    """The :class:`TensorNetMixin` subclass of a skorch net class (itself if unknown)."""
    return _FAST_NETS.get(net_class, net_class)
