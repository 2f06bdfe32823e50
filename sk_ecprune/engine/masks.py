"""Masks: which weights a layer still has, and PyTorch's pruning reparametrisation.

Masks are PyTorch's own (``torch.nn.utils.prune``): a masked layer keeps ``weight_orig`` and
a ``weight_mask`` buffer and applies their product, so training after pruning cannot bring
a removed weight back, and :func:`make_permanent` turns the result into plain parameters
with ``prune.remove``. A weight counts as removed when its effective value is zero, whether
masked or made permanent.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from .recording import linear_layers

__all__ = [
    "apply_mask",
    "effective_weight",
    "kept_mask",
    "kept_masks",
    "layer_sparsity",
    "make_permanent",
    "set_parameters",
]


def effective_weight(layer: nn.Linear) -> torch.Tensor:
    """The weight the layer applies, mask included, without autograd history."""
    if prune.is_pruned(layer):
        return (layer.weight_orig * layer.weight_mask).detach()
    return layer.weight.detach()


def kept_mask(layer: nn.Linear) -> torch.Tensor:
    """Boolean mask of the weights still present (nonzero), whether masked or made permanent."""
    return effective_weight(layer) != 0


def set_parameters(layer: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """Write new values of the weight (and bias) of ``layer``, masked or not.

    A masked layer's values go into ``weight_orig``, so that the mask still applies, and its
    ``weight`` attribute is recomputed at once (not only at the next forward pass); values
    are cast to the parameters' dtype and device.
    """
    target = layer.weight_orig if prune.is_pruned(layer) else layer.weight
    with torch.no_grad():
        target.copy_(weight.to(target.dtype))
        if bias is not None:
            layer.bias.copy_(bias.to(layer.bias.dtype))
    if target is not layer.weight:
        _refresh_weight(layer)


def apply_mask(layer: nn.Linear, keep: torch.Tensor) -> None:
    """Mask ``layer.weight`` through ``torch.nn.utils.prune`` (combined with any earlier mask)."""
    prune.custom_from_mask(layer, "weight", mask=keep)
    _refresh_weight(layer)


def _refresh_weight(layer: nn.Linear) -> None:
    """Recompute a masked layer's ``weight`` now, as the pruning pre-hook does at the next
    forward pass, outside autograd: a leaf, so that the module can be deep-copied (the
    pre-hook rebuilds it with its graph when the module runs)."""
    with torch.no_grad():
        layer.weight = layer.weight_orig * layer.weight_mask


def kept_masks(module: nn.Module) -> dict[str, torch.Tensor]:
    """Boolean mask of the weights still present in each ``nn.Linear`` layer, by name.

    Masked (``torch.nn.utils.prune``) and permanent zeros both count as removed. With
    :func:`make_permanent`, these masks let a training loop hold removed weights at zero on
    plain parameters (multiply after each optimizer step) instead of through the
    reparametrisation.
    """
    return {name: kept_mask(layer) for name, layer in linear_layers(module)}


def make_permanent(module: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight: plain parameters, zeros where removed.

    The result has no pruning hooks or buffers, so it pickles, deep-copies and loads into an
    unpruned module of the same architecture. Returns ``module`` for chaining.
    """
    for _, layer in linear_layers(module):
        if prune.is_pruned(layer):
            prune.remove(layer, "weight")
    return module


def layer_sparsity(module: nn.Module) -> dict[str, float]:
    """Fraction of zero weights in each ``nn.Linear`` layer, by layer name."""
    return {
        name: float((effective_weight(layer) == 0).double().mean())
        for name, layer in linear_layers(module)
    }
