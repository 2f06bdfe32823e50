"""The skorch nets the estimators train, through skorch's public extension points.

:class:`PrunedNetMixin` changes three things of a skorch net, each through a public method:

- interrupts reach the caller. skorch's ``partial_fit`` catches :class:`KeyboardInterrupt`
  and returns as if training had ended: convenient in a notebook, but inside an estimator's
  ``fit`` it turns Ctrl-C into a network trained for fewer epochs than asked, which then gets
  pruned, fine-tuned, returned as fitted and even stored in the dense-stage cache. The mixin
  lets skorch run ``on_train_end`` as usual and raises the interrupt again. Callbacks that
  end training early on purpose keep skorch's convention of raising ``KeyboardInterrupt``:
  they raise :class:`TrainingStopped`, its subclass, which is still swallowed;
- the optimizer is checked to be a :class:`torch.optim.Optimizer` when it is built, so that
  a wrong callable fails with a message that names the parameter;
- sample weights, skorch's way: a weighted fit passes ``X`` as the dict
  ``{"X": X, "sample_weight": w}`` (:func:`~._data.net_inputs`); ``infer`` gives the module
  ``X`` alone, and ``get_loss`` returns the batch's weighted mean of the rows' losses,
  ``sum(w * loss) / sum(w)``, which is how scikit-learn's MLP normalises the weights of
  each mini-batch (a batch whose weights are all zero has loss 0). Unweighted input
  takes skorch's own ``get_loss``;
- ``train_step`` takes one plain step (zero the gradients, forward, backward,
  ``on_grad_computed``, step) for optimizers that evaluate the loss once per step, without
  the closure and step accumulator that only multi-evaluation optimizers (LBFGS) need; and
  ``get_dataset`` puts a :class:`~._data.TensorDataset` on the net's device.

:func:`net_class` picks the class; with :data:`._skorch_internals.ENABLED` it adds the
shortcuts that rely on skorch's and torch's internals.
"""

import copy
from collections.abc import Mapping

import torch
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.utils import TeeGenerator, is_dataset, to_tensor

from . import _skorch_internals
from ._data import SAMPLE_WEIGHT, TensorDataset

__all__ = [
    "PrunedNetClassifier",
    "PrunedNetMixin",
    "PrunedNetRegressor",
    "TrainingStopped",
    "net_class",
]

#: Optimizers whose ``step`` evaluates the loss once: the plain train step is theirs.
SINGLE_EVALUATION_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)


class TrainingStopped(KeyboardInterrupt):
    """Raised by a callback to end training on purpose (early stopping), not an interrupt."""


#: Stands for ``module_`` in the pickled state of a net whose ``module`` is ``module_``.
_SAME_AS_MODULE_ = "<the trained module: module_>"


class PrunedNetMixin:
    """skorch net mixin: interrupts reach the caller, a checked optimizer, a plain step."""

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        """skorch's ``partial_fit``, re-raising an interrupt after ``on_train_end``."""
        self._interrupt = None
        super().partial_fit(X, y, classes=classes, **fit_params)
        interrupt, self._interrupt = self._interrupt, None
        if interrupt is not None:
            raise interrupt
        return self

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        """skorch's ``fit_loop``, noting an interrupt that ``partial_fit`` will swallow."""
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt as exc:
            if not isinstance(exc, TrainingStopped):
                self._interrupt = exc
            raise

    def initialize_optimizer(self, *args, **kwargs):
        """skorch's ``initialize_optimizer``, then a check of what the optimizer built."""
        super().initialize_optimizer(*args, **kwargs)
        if not isinstance(self.optimizer_, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer={self.optimizer!r} built a {type(self.optimizer_).__name__}, not "
                "a torch.optim.Optimizer; pass 'adam', 'adamw', 'sgd', a torch.optim."
                "Optimizer subclass, or a callable params -> Optimizer."
            )
        return self

    def infer(self, x, **fit_params):
        """skorch's ``infer``; of a weighted batch ``{"X", "sample_weight"}``, ``X`` alone."""
        if isinstance(x, Mapping) and SAMPLE_WEIGHT in x:
            x = x["X"]
        return super().infer(x, **fit_params)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """skorch's ``get_loss``; for a weighted batch, the weighted mean of the rows' losses.

        With ``w`` the batch's weights: ``sum(w * row_losses) / sum(w)`` (0 if ``sum(w)``
        is 0), as scikit-learn's MLP weights a mini-batch.
        """
        weights = X.get(SAMPLE_WEIGHT) if isinstance(X, Mapping) else None
        if weights is None:
            return super().get_loss(y_pred, y_true, X=X, training=training)
        rows = self.row_losses(y_pred, y_true)
        weights = to_tensor(weights, device=rows.device).to(rows.dtype)
        total = weights.sum()
        return (rows * weights).sum() / torch.where(total > 0, total, torch.ones_like(total))

    def row_losses(self, y_pred, y_true):
        """The criterion of each row (averaged over its outputs), shape ``(n,)``.

        Computed by a copy of ``criterion_`` with ``reduction="none"``; its mean over the
        rows is the batch loss of an unweighted batch (up to rounding).
        """
        cached = getattr(self, "_row_criterion", None)
        if cached is None or cached[0] is not self.criterion_:
            unreduced = copy.copy(self.criterion_)
            unreduced.reduction = "none"
            # a tuple, not a module: skorch would register a module attribute
            self._row_criterion = cached = (self.criterion_, unreduced)
        losses = cached[1](y_pred, to_tensor(y_true, device=self.device))
        return losses.reshape(len(y_pred), -1).mean(1)

    def get_dataset(self, X, y=None):
        """skorch's ``get_dataset``; a :class:`TensorDataset` is put on the net's device.

        The device is the net's at call time (not a stored option), so that a net
        unpickled onto the CPU (skorch moves it there when CUDA is missing) keeps its
        data there too.
        """
        dataset = self.dataset
        if is_dataset(X) or not (isinstance(dataset, type) and issubclass(dataset, TensorDataset)):
            return super().get_dataset(X, y)
        kwargs = self.get_params_for("dataset")
        kwargs.setdefault("device", self.device)
        return dataset(X, y, **kwargs)

    def train_step(self, batch, **fit_params):
        """One optimization step on ``batch``; see :meth:`skorch.NeuralNet.train_step`.

        For Adam, AdamW and SGD, the plain sequence is the same update as skorch's closure;
        any other optimizer class keeps skorch's ``train_step``.
        """
        if type(self.optimizer_) not in SINGLE_EVALUATION_OPTIMIZERS:
            return super().train_step(batch, **fit_params)
        self._clear_gradients()
        step = self.train_step_single(batch, **fit_params)
        self._announce_gradients(batch)
        self._take_optimizer_step()
        return step

    def _clear_gradients(self):
        self.optimizer_.zero_grad()

    def _announce_gradients(self, batch):
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(self.get_all_learnable_params()),
            batch=batch,
            training=True,
        )

    def _take_optimizer_step(self):
        self.optimizer_.step()

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_interrupt", None)
        state.pop("_row_criterion", None)
        if isinstance(state.get("module"), torch.nn.Module) and state["module"] is getattr(
            self, "module_", None
        ):
            # The estimators give skorch the module as an instance, which skorch then
            # trains as module_: the same object. skorch pickles module_ so that it can
            # be loaded onto the CPU (map_location); ``module`` would be pickled plainly
            # and fail to load a CUDA-fitted net on a machine without GPU.
            state["module"] = _SAME_AS_MODULE_
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if isinstance(self.__dict__.get("module"), str) and self.module == _SAME_AS_MODULE_:
            self.module = self.module_


class PrunedNetRegressor(PrunedNetMixin, NeuralNetRegressor):
    """:class:`skorch.NeuralNetRegressor` with :class:`PrunedNetMixin`."""


class PrunedNetClassifier(PrunedNetMixin, NeuralNetClassifier):
    """:class:`skorch.NeuralNetClassifier` with :class:`PrunedNetMixin`."""


class FastPrunedNetRegressor(_skorch_internals.InternalsMixin, PrunedNetRegressor):
    """:class:`PrunedNetRegressor` with the shortcuts of :mod:`._skorch_internals`."""


class FastPrunedNetClassifier(_skorch_internals.InternalsMixin, PrunedNetClassifier):
    """:class:`PrunedNetClassifier` with the shortcuts of :mod:`._skorch_internals`."""


def net_class(classifier: bool):
    """The skorch net class of a classifier or a regressor, as the switch says."""
    if _skorch_internals.ENABLED:
        return FastPrunedNetClassifier if classifier else FastPrunedNetRegressor
    return PrunedNetClassifier if classifier else PrunedNetRegressor
