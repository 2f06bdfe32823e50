"""skorch callbacks the estimators plug into their network's training loop."""

import math
from collections.abc import Mapping

import numpy as np
import torch
from skorch.callbacks import Callback, EarlyStopping
from sklearn.metrics import accuracy_score, r2_score

from ._data import SAMPLE_WEIGHT
from ._net import TrainingStopped

__all__ = [
    "HoldRemovedWeights",
    "print_line",
    "RaiseOnDivergence",
    "StopEarly",
    "TrainingDiverged",
    "ValidationScore",
]


def print_line(*args, **kwargs):
    """``print``, looked up when called: the sink of the nets' printing callbacks.

    skorch's callbacks default to ``sink=print``, a reference to the ``builtins.print`` of
    the moment the net is built. Ray replaces ``builtins.print`` in its driver; a net that
    kept the original then fails to pickle (a second search, ``joblib.dump``). A function
    of the package pickles by name and prints with whatever ``print`` is current.
    """
    print(*args, **kwargs)


class TrainingDiverged(ValueError):
    """Training produced a non-finite loss: the fit cannot return a usable network."""


class RaiseOnDivergence(Callback):
    """Stop training with :class:`TrainingDiverged` when an epoch's loss is not finite.

    skorch already computes the epoch losses (``train_loss`` and, with a validation split,
    ``valid_loss``); checking them at the end of each epoch costs nothing and stops a
    diverging fit where it happens instead of after the remaining epochs, the pruning and
    the fine-tuning, which would otherwise return NaN predictions or fail much later with
    an unrelated message.

    Parameters
    ----------
    stage : str, default="training"
        What the net is doing, for the message (``"the dense training"``,
        ``"fine-tuning after pruning step 2 of 5"``, ...); the estimators set it before
        each stage.

    advice : str, default=""
        What to try, appended to the message.
    """

    def __init__(self, stage="training", advice=""):
        self.stage = stage
        self.advice = advice

    def on_epoch_end(self, net, **kwargs):
        epoch = net.history[-1]
        for key in ("train_loss", "valid_loss"):
            value = epoch.get(key)
            if value is not None and not math.isfinite(value):
                raise TrainingDiverged(
                    f"Training diverged in {self.stage}: the {key.replace('_', ' ')} of "
                    f"epoch {len(net.history)} is {value}. {self.advice}".rstrip()
                )


class HoldRemovedWeights(Callback):
    """Keep removed weights at exactly zero while a pruned network trains.

    After every optimizer step (skorch's ``on_batch_end`` of a training batch) and at the
    end of training the weights of each masked layer are multiplied by their mask. The
    estimators put it after every other callback, the user's included, so that it acts
    last. With an optimizer whose update is
    element-wise (Adam, AdamW, SGD), training plain weights this way gives the kept weights
    exactly the updates of training through ``torch.nn.utils.prune``'s reparametrisation
    (the forward pass sees the same zeros, so the gradients of the kept weights and their
    updates are the same), but costs one in-place multiply per layer and step instead of a masked copy of
    every weight in each forward pass and its gradient in each backward pass; on small
    networks that reparametrisation made a fine-tuning epoch 16-25% slower than a dense one.

    Parameters
    ----------
    masks : dict of str to array-like or None, default=None
        Boolean masks (True = kept) by the layer's name in ``module_.named_modules()``,
        kept as numpy arrays (plain types: the fitted estimator persists with skops).
        None holds nothing.
    """

    def __init__(self, masks=None):
        self.masks = masks

    def hold(self, masks):
        """Hold ``masks`` from now on (gradual pruning: a later step removed more)."""
        self.masks = {name: _to_numpy(mask) for name, mask in masks.items()}
        self._targets = None

    def initialize(self):
        self._targets = None
        return self

    def on_train_begin(self, net, **kwargs):
        self._targets = self._weights_and_masks(net.module_)
        self._apply()

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if training:
            if self._targets is None:  # hold() during training
                self._targets = self._weights_and_masks(net.module_)
            self._apply()

    def on_train_end(self, net, **kwargs):
        # after the callbacks before it (it runs last): one that loads weights at the end
        # of training (a checkpoint, a best epoch) cannot bring removed weights back
        if self._targets:
            self._apply()

    def _weights_and_masks(self, module):
        """Pairs (detached weight, float mask on the weight's device) of the held layers.

        The detached views share the weights' storage, so multiplying them in place needs
        no ``torch.no_grad`` block (whose entry and exit cost more than the products on
        small layers).
        """
        if not self.masks:
            return []
        layers = dict(module.named_modules())
        pairs = []
        for name, mask in self.masks.items():
            weight = layers[name].weight.detach()
            pairs.append((weight, torch.as_tensor(mask).to(device=weight.device,
                                                            dtype=weight.dtype)))
        return pairs

    def _apply(self):
        for weight, mask in self._targets:
            weight.mul_(mask)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_targets"] = None  # rebuilt at the next training; keeps GPU tensors out
        return state


def _to_numpy(mask):
    return mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)


class StopEarly(EarlyStopping):
    """skorch's :class:`~skorch.callbacks.EarlyStopping`, stopping with :class:`TrainingStopped`.

    skorch's callback ends training by raising a plain ``KeyboardInterrupt``, which the
    estimators' nets pass on to the caller as the user's Ctrl-C (:mod:`._net`). This one
    raises :class:`~._net.TrainingStopped` instead, so that stopping early ends only the
    stage. Everything else is skorch's: the monitored value, ``patience``, ``threshold``
    and, with ``load_best=True``, the module weights of the best epoch restored at the end
    of the training call (skorch resets all of it at the start of each call).

    Only the ``KeyboardInterrupt`` skorch raises for the stop (when ``misses_`` has
    reached ``patience``) is replaced; any other interrupt passes unchanged.
    """

    def on_epoch_end(self, net, **kwargs):
        try:
            super().on_epoch_end(net, **kwargs)
        except KeyboardInterrupt as exc:
            if isinstance(exc, TrainingStopped) or self.misses_ != self.patience:
                raise
            by = (f"{self.threshold} times its best value" if self.threshold_mode == "rel"
                  else f"{self.threshold}")
            raise TrainingStopped(
                f"{self.monitor} did not decrease by at least {by} for {self.patience} epochs"
            ) from None


class ValidationScore(Callback):
    """Record scikit-learn's validation score of each epoch as ``"valid_score"``.

    The score scikit-learn's MLP computes for early stopping: R² (``kind="r2"``, averaged
    uniformly over outputs) or accuracy (``kind="accuracy"``, the net's outputs being
    logits), on the validation split, weighted by the validation rows' sample weights when
    the fit has them. It is collected from the outputs the validation pass computes
    anyway (no extra forward pass).

    Parameters
    ----------
    kind : {"r2", "accuracy"}
    """

    def __init__(self, kind):
        self.kind = kind

    def on_epoch_begin(self, net, **kwargs):
        self._parts = []

    def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
        if training or y_pred is None:
            return
        Xb, yb = batch
        weights = Xb.get(SAMPLE_WEIGHT) if isinstance(Xb, Mapping) else None
        self._parts.append((y_pred.detach(), yb, weights))

    def on_epoch_end(self, net, **kwargs):
        parts, self._parts = getattr(self, "_parts", []), []
        if not parts:
            return
        y_pred = torch.cat([p for p, _, _ in parts]).cpu().double().numpy()
        y_true = torch.cat([torch.as_tensor(y) for _, y, _ in parts]).cpu().numpy()
        weights = None
        if parts[0][2] is not None:
            weights = torch.cat([torch.as_tensor(w) for _, _, w in parts]).cpu().numpy()
            if not weights.sum(dtype=np.float64) > 0:
                raise ValueError(
                    "The sample weights of the validation set are all zero, so no "
                    "validation score exists; use another random_state or a larger "
                    "validation_fraction, or give more rows a positive weight."
                )
        if not np.isfinite(y_pred).all():
            score = float("nan")  # as scikit-learn's MLP scores non-finite predictions
        elif self.kind == "accuracy":
            score = accuracy_score(y_true, y_pred.argmax(1), sample_weight=weights)
        else:
            score = r2_score(y_true, y_pred, sample_weight=weights)
        net.history.record("valid_score", float(score))

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_parts", None)
        return state
