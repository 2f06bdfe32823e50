"""Baselines that need no output sensitivities: magnitude, random, loss-gradient magnitude."""

from __future__ import annotations

import torch

from ..masks import effective_weight
from ..recording import LayerRecorder, forward_recorded
from .registry import Importance, register_scorer

__all__ = ["gradient_magnitude_importance", "magnitude_importance", "random_importance"]


@register_scorer("magnitude")
def magnitude_importance(module, layers, data, **_) -> Importance:
    """``|W|``."""
    return Importance([effective_weight(layer).abs() for layer in layers])


@register_scorer("random")
def random_importance(module, layers, data, *, generator=None, **_) -> Importance:
    """Uniform random scores, from ``generator`` for reproducibility."""
    return Importance(
        [
            torch.rand(layer.weight.shape, generator=generator, dtype=torch.float64).to(
                layer.weight.device
            )
            for layer in layers
        ]
    )


@register_scorer("gradient_magnitude")
def gradient_magnitude_importance(module, layers, data, *, loss=None, **_) -> Importance:
    """``|W * dL/dW|`` with the loss gradient accumulated over all of ``data``.

    ``loss(output, y)`` must return the mean over the batch; each batch is weighted by its
    size so the gradient is that of the mean loss over the whole data set.
    """
    if loss is None or data.y is None:
        raise ValueError(
            "method='gradient_magnitude' needs the targets y and a loss callable "
            "loss(output, y), e.g. torch.nn.MSELoss() or torch.nn.CrossEntropyLoss()."
        )
    grads = [torch.zeros_like(effective_weight(layer), dtype=torch.float64) for layer in layers]
    with LayerRecorder(layers) as recorder:
        for Xb, yb in data:
            output = forward_recorded(module, recorder, Xb)
            batch_loss = loss(output.reshape(Xb.shape[0], *_output_shape(yb, output)), yb)
            weight = Xb.shape[0] / data.n_samples
            deltas = torch.autograd.grad(batch_loss * weight, recorder.outputs, allow_unused=True)
            for g, delta, z in zip(grads, deltas, recorder.inputs):
                if delta is not None:
                    g += (delta.T @ z.detach()).double()
            recorder.clear()
    return Importance(
        [(effective_weight(layer).double() * g).abs() for layer, g in zip(layers, grads)]
    )


def _output_shape(yb, output):
    """Shape the flat output back for the loss: (n,) targets of a single-output regressor."""
    if yb.is_floating_point() and yb.ndim == 1 and output.shape[1] == 1:
        return ()
    return (output.shape[1],)
