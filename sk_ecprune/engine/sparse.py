"""Sparse weight matrices for inference: :func:`to_sparse` and :class:`CSRLinear`.

A weight-pruned layer keeps its zeros inside a dense matrix, which costs the dense matmul.
Stored in torch's CSR format its product skips them, but pays an indexing cost per nonzero
and a fixed cost per call. Measured (``benchmarks/bench_inference.py``, one thread, CPU, 10,000
rows): with 90% of the weights gone, CSR layers are 1.8x faster than dense ones on
784-256-256-10 and 2.1x on 64-32-32-10 but 0.88x on a 100-1024-1024-1 regressor; with 95%,
1.3-3.4x faster on all three; with 80% and less, slower everywhere (0.2-0.9x); for single
rows, slower at every sparsity up to 90% (0.6-0.95x). Hence the rule of :func:`to_sparse`:
only layers with at least ``min_sparsity`` zeros (default 0.9) become CSR, and only on
request, for batch prediction. Removing whole units (``granularity="neuron"`` and
:func:`~.compaction.compact`) is as fast or faster at every ratio measured (1.0-13x for
10,000 rows) and needs no sparse kernel.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils import prune

from ._checks import check_fraction
from .masks import effective_weight

__all__ = ["CSRLinear", "to_sparse"]


class CSRLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` in torch's CSR layout; for inference (no gradients)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
            warnings.filterwarnings("ignore", "Sparse CSR tensor support", UserWarning)
            weight = effective_weight(linear).detach().to_sparse_csr()
        self.register_buffer("weight", weight)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (self.weight @ x.reshape(-1, self.in_features).T).T
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"nonzero={nnz} ({nnz / max(1, self.weight.numel()):.1%})")


def to_sparse(module: nn.Module, min_sparsity: float = 0.9) -> nn.Module:
    """A copy of ``module`` whose ``nn.Linear`` layers with at least ``min_sparsity`` zeros
    are :class:`CSRLinear` layers (for batch inference on the CPU; see the module docstring).

    Parameters
    ----------
    module : torch.nn.Module
        Any module; masked layers (``torch.nn.utils.prune``) are read through their mask.
        Not modified.
    min_sparsity : float in [0, 1), default=0.9
        The fraction of zero weights from which a layer is stored as CSR.

    Returns
    -------
    sparse : torch.nn.Module
        In evaluation mode; the same outputs as ``module`` up to float rounding.
    """
    check_fraction("min_sparsity", min_sparsity)
    copied = _copy(module).eval()
    for name, child in list(copied.named_modules()):
        for attribute, layer in list(child.named_children()):
            if isinstance(layer, nn.Linear):
                zeros = float((effective_weight(layer) == 0).double().mean())
                if zeros >= min_sparsity:
                    setattr(child, attribute, CSRLinear(layer))
    return copied


def _copy(module):
    """A deep copy, also of a masked module after a forward pass (its ``weight`` is then a
    non-leaf tensor, which ``copy.deepcopy`` refuses): those copy as detached values."""
    memo = {}
    for layer in module.modules():
        if prune.is_pruned(layer) and isinstance(getattr(layer, "weight", None), torch.Tensor):
            memo[id(layer.weight)] = layer.weight.detach().clone()
    return copy.deepcopy(module, memo)
