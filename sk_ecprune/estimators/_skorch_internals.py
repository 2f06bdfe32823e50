"""Training-loop shortcuts that rely on skorch's and torch's internals; off with one switch.

On the small networks of tabular data, Python around each batch costs as much as the
arithmetic. :class:`InternalsMixin` removes some of it, computing exactly what the public
path of :mod:`._net` computes, through names that skorch or torch may change:

* the gradients are set to None directly, without the profiler scope and TorchDynamo guard
  ``Optimizer.zero_grad`` adds to every call;
* ``on_grad_computed`` is announced only when the net or a callback listens to it;
* Adam and AdamW steps go through torch's functional ``adam`` with the arguments
  ``Adam.step`` passes, where that is provably the same call (:func:`_adam_step`);
* ``train_step_single`` puts the modules in training mode only when one is not in it;
* ``run_single_epoch`` writes the history skorch writes but calls only the batch-level
  callback methods that are not skorch's no-ops; on an accelerator it reads the batch losses
  once per pass instead of synchronising after every batch.

Set :data:`ENABLED` to False (before fitting) to train through skorch's public API alone;
the tests compare both paths, and ``benchmarks/bench_training.py`` measures the gain.
"""

from __future__ import annotations

import inspect

import torch
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.dataset import get_len, unpack_data
from skorch.history import History

__all__ = ["ENABLED", "InternalsMixin"]

#: Use the shortcuts of this module (True) or skorch's public API alone (False).
ENABLED = True


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


class InternalsMixin:
    """Net mixin (before :class:`~._net.PrunedNetMixin`): the same steps, less Python."""

    #: Read batch losses once per pass instead of once per batch; None: on accelerators.
    defer_batch_losses = None

    def _clear_gradients(self):
        """Set the gradients to None, as ``optimizer.zero_grad()`` does by default."""
        for group in self.optimizer_.param_groups:
            for param in group["params"]:
                param.grad = None

    def _announce_gradients(self, batch):
        if self._listens_to_grads():
            super()._announce_gradients(batch)

    def _take_optimizer_step(self):
        if not _adam_step(self.optimizer_):
            self.optimizer_.step()

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
