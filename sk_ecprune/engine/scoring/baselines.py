"""Baselines that need no output sensitivities: magnitude, random, loss-gradient magnitude."""

from __future__ import annotations

import copy

import torch

from ..masks import effective_weight
from ..recording import LayerRecorder, forward_recorded
from ..methods import register_method
from .registry import Importance, WeightScorer

__all__ = ["GradientMagnitude", "Magnitude", "Random"]


@register_method("magnitude")
class Magnitude(WeightScorer):
    """``|W|``."""

    def importance(self, module, layers, data, **_) -> Importance:
        return Importance([effective_weight(layer).abs() for layer in layers])


@register_method("random")
class Random(WeightScorer):
    """Uniform random scores, from ``generator`` for reproducibility."""

    def importance(self, module, layers, data, *, generator=None, **_) -> Importance:
        return Importance(
            [
                torch.rand(layer.weight.shape, generator=generator, dtype=torch.float64).to(
                    layer.weight.device
                )
                for layer in layers
            ]
        )


@register_method("gradient_magnitude")
class GradientMagnitude(WeightScorer):
    """``|W * dL/dW|`` with the loss gradient accumulated over all of ``data``.

    ``loss(output, y)`` must return the mean over the batch; each batch is weighted by its
    size so the gradient is that of the mean loss over the whole data set. With weighted
    data, ``L`` is the weighted mean of the rows' losses, which needs each row's loss:
    ``loss`` must then be a torch loss module (it has a ``reduction``; a copy with
    ``reduction="none"`` gives the rows' losses, averaged over any output dimension).
    """

    def importance(self, module, layers, data, *, loss=None, **_) -> Importance:
        if loss is None or data.y is None:
            raise ValueError(
                "method='gradient_magnitude' needs the targets y and a loss callable "
                "loss(output, y), e.g. torch.nn.MSELoss() or torch.nn.CrossEntropyLoss()."
            )
        row_loss = None if data.weights is None else _unreduced(loss)
        grads = [torch.zeros_like(effective_weight(layer), dtype=torch.float64) for layer in layers]
        with LayerRecorder(layers) as recorder:
            for Xb, yb, wb in data:
                output = forward_recorded(module, recorder, Xb)
                shaped = output.reshape(Xb.shape[0], *_output_shape(yb, output))
                if wb is None:
                    batch_loss = loss(shaped, yb) * (Xb.shape[0] / data.n_samples)
                else:
                    rows = row_loss(shaped, yb).reshape(Xb.shape[0], -1).mean(1)
                    batch_loss = (rows * wb).sum() / data.total_weight
                deltas = torch.autograd.grad(batch_loss, recorder.outputs, allow_unused=True)
                for g, delta, z in zip(grads, deltas, recorder.inputs):
                    if delta is not None:
                        g += (delta.T @ z.detach()).double()
                recorder.clear()
        return Importance(
            [(effective_weight(layer).double() * g).abs() for layer, g in zip(layers, grads)]
        )


def _unreduced(loss):
    """A copy of the torch loss module ``loss`` that returns the per-element losses."""
    if not isinstance(loss, torch.nn.Module) or not hasattr(loss, "reduction"):
        raise ValueError(
            "method='gradient_magnitude' with sample weights needs a torch loss module "
            f"(one with a `reduction` attribute, e.g. torch.nn.MSELoss()); got {loss!r}, "
            "whose per-row losses cannot be weighted."
        )
    unreduced = copy.copy(loss)
    unreduced.reduction = "none"
    return unreduced


def _output_shape(yb, output):
    """Shape the flat output back for the loss: (n,) targets of a single-output regressor."""
    if yb.is_floating_point() and yb.ndim == 1 and output.shape[1] == 1:
        return ()
    return (output.shape[1],)
