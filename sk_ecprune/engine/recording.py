"""Recording a module: its linear layers, their inputs and outputs, and the data streamed in.

Everything here works on any ``torch.nn.Module`` whose ``nn.Linear`` layers are each applied
once per forward pass, to a ``(n_samples, in_features)`` input: a plain ``nn.Sequential``,
a skorch module, or a user's MLP with residual connections. Nothing here knows a scoring
method.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def linear_layers(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Return the prunable ``nn.Linear`` layers of ``module`` as ``(name, layer)`` pairs.

    The order is the order of ``module.named_modules()``: registration order, which is the
    order of application for sequential networks.
    """
    layers = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(
            f"{type(module).__name__} has no nn.Linear layer; the pruning engine scores and "
            "removes the weights of nn.Linear layers only."
        )
    return layers


def module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the module's first floating-point parameter."""
    for p in module.parameters():
        if p.is_floating_point():
            return p.device, p.dtype
    raise ValueError(f"{type(module).__name__} has no floating-point parameter.")


def _as_tensor(data, name: str) -> torch.Tensor:
    if isinstance(data, torch.Tensor):
        return data.detach()
    return torch.as_tensor(np.asarray(data))


def _check_finite(X: torch.Tensor) -> torch.Tensor:
    if X.is_floating_point() and not torch.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values; the scores would be meaningless.")
    return X


def check_input_width(module: nn.Module, X: torch.Tensor) -> None:
    """Raise a ValueError naming the layer if ``module`` cannot take rows of ``X``.

    One forward pass of the first row, with pre-hooks that compare each linear layer's
    input width with its ``in_features``: the error says which layer expected how many
    features, instead of torch's "mat1 and mat2 shapes cannot be multiplied".
    """

    def expect(name, layer):
        def check(_, args):
            width = args[0].shape[-1]
            if width != layer.in_features:
                raise ValueError(
                    f"nn.Linear layer {name!r} of {type(module).__name__} expects "
                    f"{layer.in_features} input features but receives {width} (X has "
                    f"{X.shape[-1]} columns); pass X with the columns the module was built for."
                )

        return check

    handles = [
        layer.register_forward_pre_hook(expect(name, layer))
        for name, layer in linear_layers(module)
    ]
    try:
        with torch.no_grad():
            module(X[:1])
    finally:
        for handle in handles:
            handle.remove()


def _check_weights(sample_weight, n_samples: int) -> torch.Tensor:
    """``sample_weight`` as a float64 tensor of shape (n_samples,); raise if unusable."""
    weights = _as_tensor(sample_weight, "sample_weight")
    if weights.ndim != 1 or weights.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), one weight per row of X; got "
            f"{tuple(weights.shape)}."
        )
    if weights.is_complex() or weights.dtype == torch.bool:
        raise ValueError(f"sample_weight must hold real numbers; got {weights.dtype}.")
    weights = weights.to(torch.float64)
    if not torch.isfinite(weights).all():
        raise ValueError("sample_weight contains NaN or infinite values.")
    if (weights < 0).any():
        raise ValueError("sample_weight must be non-negative.")
    if not weights.sum() > 0:
        raise ValueError(
            "sample_weight sums to zero on the rows scored: every expectation would be "
            "0/0. Give some rows a positive weight (or score on more rows: max_samples)."
        )
    return weights


@dataclass
class ScoringData:
    """The data a scoring method streams through the module, in batches.

    Memory for scoring does not grow with the number of samples: only one batch at a time
    is moved to the module's device. ``X`` is never modified.

    The contract every scoring method relies on: iterating yields ``(Xb, yb, wb)`` per
    batch, ``Xb`` on ``device`` in ``dtype``, ``yb`` the targets' rows (or None), and
    ``wb`` the rows' weights (shape ``(len(Xb),)``, on ``device`` in ``dtype``) or None
    when the data are unweighted. An expectation over the data is
    ``sum over batches of (wb * f(Xb)).sum(0)`` divided by :attr:`total_weight`, which is
    the number of rows when ``wb`` is None (then ``f(Xb).sum(0)`` alone: unweighted data
    take exactly the unweighted arithmetic).

    Parameters
    ----------
    X : array-like or torch.Tensor of shape (n_samples, n_features)
    y : array-like or torch.Tensor of shape (n_samples, ...), default=None
    batch_size : int
    device, dtype : where and in which precision the module computes.
    check_finite : bool
        Check every batch for NaN or infinity (the first row is always checked); False
        for data already checked, e.g. by an earlier step of an iterative schedule.
    weights : torch.Tensor of shape (n_samples,) or None, default=None
        Non-negative float64 weight of each row (checked by :meth:`from_arrays`); None
        weighs every row equally.
    """

    X: torch.Tensor
    y: torch.Tensor | None
    batch_size: int
    device: torch.device
    dtype: torch.dtype
    check_finite: bool = True
    weights: torch.Tensor | None = None

    @classmethod
    def from_arrays(
        cls, X, y, batch_size, device, dtype, check_finite=True, sample_weight=None
    ) -> "ScoringData":
        X = _as_tensor(X, "X")
        if X.ndim < 2 or X.shape[0] == 0:
            raise ValueError(
                f"X must have shape (n_samples, n_features) with n_samples >= 1; got {tuple(X.shape)}."
            )
        _check_finite(X[:1])  # the rest is checked batch by batch: a whole-array check
        # would allocate temporaries as large as X.
        if y is not None:
            y = _as_tensor(y, "y")
            if y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"X and y have different numbers of samples: {X.shape[0]} and {y.shape[0]}."
                )
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size}.")
        weights = None if sample_weight is None else _check_weights(sample_weight, X.shape[0])
        return cls(X, y, int(batch_size), torch.device(device), dtype, bool(check_finite),
                   weights)

    @property
    def n_samples(self) -> int:
        return int(self.X.shape[0])

    @property
    def total_weight(self) -> float:
        """The sum of the weights: the denominator of every expectation (rows if None)."""
        if self.weights is None:
            return float(self.n_samples)
        return float(self.weights.sum())

    def __iter__(self):
        for start in range(0, self.n_samples, self.batch_size):
            stop = start + self.batch_size
            Xb = self.X[start:stop].to(self.device, self.dtype, non_blocking=True)
            if self.check_finite:
                _check_finite(Xb)
            yb = None if self.y is None else self.y[start:stop].to(self.device, non_blocking=True)
            wb = None
            if self.weights is not None:
                wb = self.weights[start:stop].to(self.device, self.dtype, non_blocking=True)
            yield Xb, yb, wb


class LayerRecorder:
    """Forward hooks that keep each linear layer's input ``z`` and output ``a`` of one pass.

    The outputs are kept with their autograd history, so that derivatives of the network's
    output with respect to every pre-activation can be taken afterwards.
    """

    def __init__(self, layers: list[nn.Linear]):
        self.layers = layers
        self.inputs: list[torch.Tensor | None] = [None] * len(layers)
        self.outputs: list[torch.Tensor | None] = [None] * len(layers)
        self._handles = []

    def _hook(self, index: int):
        def record(layer, args, output):
            if self.outputs[index] is not None:
                raise ValueError(
                    f"nn.Linear layer #{index} ({layer}) was applied more than once in one "
                    "forward pass; the engine needs each linear layer applied once per sample."
                )
            if output.ndim != 2:
                raise ValueError(
                    f"nn.Linear layer #{index} saw an input of shape {tuple(args[0].shape)}; "
                    "the engine needs (n_samples, in_features) inputs."
                )
            self.inputs[index] = args[0]
            self.outputs[index] = output

        return record

    def clear(self) -> None:
        self.inputs = [None] * len(self.layers)
        self.outputs = [None] * len(self.layers)

    def __enter__(self) -> "LayerRecorder":
        self._handles = [
            layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


@contextmanager
def scoring_session(module: nn.Module, X, y=None, batch_size: int = 1024, check_finite=True,
                    sample_weight=None):
    """``(layers, data)`` of ``module`` for scoring, with the module in evaluation mode.

    ``layers`` are its ``nn.Linear`` layers in module order, ``data`` the :class:`ScoringData`
    of ``X`` (and ``y``, ``sample_weight``) on the module's device and dtype; the first row
    has been checked to fit the module (:func:`check_input_width`). The module's mode is
    restored on exit.
    """
    layers = [layer for _, layer in linear_layers(module)]
    device, dtype = module_device_dtype(module)
    data = ScoringData.from_arrays(X, y, batch_size, device, dtype, check_finite, sample_weight)
    with evaluation_mode(module):
        check_input_width(module, data.X[:1].to(device, dtype))
        yield layers, data


@contextmanager
def evaluation_mode(module: nn.Module):
    """Score the network as it predicts (dropout off, batch norm frozen), then restore its mode."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def forward_recorded(
    module: nn.Module, recorder: LayerRecorder, Xb: torch.Tensor, keep_graph: bool = True
) -> torch.Tensor:
    """One forward pass that keeps the graph from every pre-activation to the output.

    The input is made to require gradients so that the graph exists even when the parameters
    are frozen; ``torch.autograd.grad`` then only walks from the output down to the recorded
    pre-activations, never to the input. ``keep_graph=False`` records the values only.
    """
    recorder.clear()
    if not keep_graph:
        with torch.no_grad():
            out = module(Xb)
    else:
        with torch.enable_grad():
            out = module(Xb.detach().requires_grad_(Xb.is_floating_point()))
    missing = [i for i, a in enumerate(recorder.outputs) if a is None]
    if missing:
        raise ValueError(
            f"nn.Linear layers {missing} were not applied in the forward pass; the engine "
            "needs every nn.Linear layer of the module to be used."
        )
    return out.reshape(out.shape[0], -1)
