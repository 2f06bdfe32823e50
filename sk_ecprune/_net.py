"""The skorch nets the estimators train: skorch's, with interrupts that reach the caller.

skorch's ``partial_fit`` catches :class:`KeyboardInterrupt` and returns as if training had
ended: convenient in a notebook, but inside an estimator's ``fit`` it turns Ctrl-C into a
network trained for fewer epochs than asked, which then gets pruned, fine-tuned, returned
as fitted and even stored in the dense-stage cache. :class:`PrunedNetMixin` lets skorch run
its ``on_train_end`` as usual and then raises the interrupt again. Callbacks that end
training early on purpose use skorch's convention of raising ``KeyboardInterrupt``; they
raise :class:`TrainingStopped`, its subclass, which is still swallowed.
"""

import torch
from skorch import NeuralNetClassifier, NeuralNetRegressor

from ._data import TensorNetMixin

__all__ = ["PrunedNetClassifier", "PrunedNetMixin", "PrunedNetRegressor", "TrainingStopped"]


class TrainingStopped(KeyboardInterrupt):
    """Raised by a callback to end training on purpose (early stopping), not an interrupt."""


class PrunedNetMixin:
    """skorch net mixin: a ``KeyboardInterrupt`` during training reaches the caller.

    Also checks that the ``optimizer`` built a :class:`torch.optim.Optimizer`, so that a
    wrong callable fails with a message that names the parameter.
    """

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

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_interrupt", None)
        return state


class PrunedNetRegressor(PrunedNetMixin, TensorNetMixin, NeuralNetRegressor):
    """:class:`skorch.NeuralNetRegressor` with the estimators' training loop."""


class PrunedNetClassifier(PrunedNetMixin, TensorNetMixin, NeuralNetClassifier):
    """:class:`skorch.NeuralNetClassifier` with the estimators' training loop."""
