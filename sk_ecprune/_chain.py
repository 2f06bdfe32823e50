"""Output sensitivities of a plain chain of linear layers and elementwise activations.

For ``y = L_n(f_{n-1}(... f_1(L_1(x))))`` the Jacobian of the output with respect to each
pre-activation follows from the one above it: ``J_n = diag(f_n'(a_n))`` (the identity when no
activation follows the last layer) and ``J_l = (J_{l+1} W_{l+1}) * f_l'(a_l)``. Carrying all
``K`` output rows at once gives every layer's per-sample sensitivities in one batched matrix
product per layer, instead of ``K`` backward passes through autograd (the general path of
:func:`sk_ecprune._layers.output_sensitivities`, which this reproduces). On the paper's small
networks it makes an EC scoring pass several times cheaper, which matters for iterative
schedules that score the network again at every step.
"""

from __future__ import annotations

import torch
from torch import nn

from ._layers import effective_weight

#: Modules applied elementwise (in evaluation mode), whose derivative is diagonal.
ELEMENTWISE = (
    nn.Identity,
    nn.ReLU,
    nn.PReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.SiLU,
    nn.Softplus,
    nn.Dropout,
)

#: Largest Jacobian block (batch rows x outputs x width) built at once; beyond, autograd.
MAX_JACOBIAN_ELEMENTS = 2**25


def linear_chain(module: nn.Module, layers: list[nn.Linear]):
    """``[(linear, [elementwise modules after it]), ...]``, or None if not a plain chain.

    ``module`` qualifies only where its forward pass is known to be the chain: an
    ``nn.Sequential`` that keeps ``nn.Sequential.forward``, or a module whose
    ``sequential_chain()`` returns one and whose ``forward`` is defined by the same class
    as that method (a subclass that overrides ``forward`` alone computes something else, so
    it gets the autograd path). Every element must keep the ``forward`` of its torch class
    (``nn.Linear`` or one of :data:`ELEMENTWISE`), and neither the module nor its
    activations may carry forward hooks, which could change what they compute.
    """
    chain = None
    if isinstance(module, nn.Sequential):
        chain = module
    elif _defined_by(type(module), "forward") is _defined_by(type(module), "sequential_chain"):
        chain = module.sequential_chain()
    if not isinstance(chain, nn.Sequential) or _hooked(module):
        return None
    groups = []
    for item in _flatten(chain):
        if item is None:
            return None
        if _keeps_forward(item, (nn.Linear,)):
            groups.append((item, []))
        elif not _keeps_forward(item, ELEMENTWISE) or _hooked(item):
            return None
        elif groups:  # elementwise modules before the first layer only change its input
            groups[-1][1].append(item)
    if [linear for linear, _ in groups] != list(layers):
        return None
    return groups


def _defined_by(cls, name):
    """The class of ``cls``'s MRO that defines attribute ``name`` (None if none does)."""
    return next((klass for klass in cls.__mro__ if name in vars(klass)), None)


def _keeps_forward(item, classes):
    """Whether ``item`` is an instance of one of ``classes`` that keeps its ``forward``."""
    return any(isinstance(item, cls) and type(item).forward is cls.forward for cls in classes)


def _hooked(item):
    return bool(item._forward_hooks or item._forward_pre_hooks)


def _flatten(sequential: nn.Sequential):
    """The elements of a chain of nested ``Sequential``s; None for a ``Sequential`` subclass
    with its own ``forward``."""
    if type(sequential).forward is not nn.Sequential.forward or _hooked(sequential):
        yield None
        return
    for item in sequential:
        if isinstance(item, nn.Sequential):
            yield from _flatten(item)
        else:
            yield item


def chain_sensitivities(groups, preacts, output, metric="euclidean"):
    """Per-sample sensitivities ``s_l`` of every layer of a chain, or None if too large.

    Same definition as :func:`sk_ecprune._layers.output_sensitivities`: with ``J`` the
    Jacobian of the output with respect to a layer's pre-activation, ``"euclidean"`` gives
    ``sum_k J_k^2`` and ``"fisher"`` gives ``J^T F J`` with ``F = diag(p) - p p^T``.

    Both are squared norms ``|R J|^2``: ``R = I`` for the Euclidean metric and, for the
    Fisher one, ``R = (I - q q^T) diag(q)`` with ``q = sqrt(p)`` (``R^T R = F``, since
    ``I - q q^T`` is a projection when ``sum(p) = 1``). ``R J`` is carried down the chain in
    place of ``J``, so the Fisher metric costs no more than the Euclidean one. Rows are
    processed in chunks so that no block exceeds :data:`MAX_JACOBIAN_ELEMENTS`; None when
    a single row would.
    """
    n, n_outputs = output.shape
    per_row = n_outputs * max(linear.out_features for linear, _ in groups)
    chunk = MAX_JACOBIAN_ELEMENTS // per_row
    if chunk < 1:
        return None
    parts = [
        _chunk_sensitivities(groups, [a[start : start + chunk] for a in preacts],
                             output[start : start + chunk], metric)
        for start in range(0, n, chunk)
    ]
    if len(parts) == 1:
        return parts[0]
    return [torch.cat(layer_parts) for layer_parts in zip(*parts)]


def _chunk_sensitivities(groups, preacts, output, metric):
    sensitivities = [None] * len(groups)
    rotated = _output_metric_root(output.detach(), metric)  # R J, shape (n, n_outputs, width)
    for index in reversed(range(len(groups))):
        linear, activations = groups[index]
        if activations:
            derivative = _elementwise_derivative(activations, preacts[index].detach())
            rotated = rotated * derivative.unsqueeze(1)
        sensitivities[index] = rotated.square().sum(1)
        if index:
            rotated = rotated @ effective_weight(linear).detach()
    return sensitivities


def _output_metric_root(output, metric):
    """``R`` per sample (n, K, K) with ``R^T R`` the output metric."""
    n, n_outputs = output.shape
    eye = torch.eye(n_outputs, dtype=output.dtype, device=output.device)
    if metric == "euclidean":
        # contiguous, so that the products down the chain fold into one matrix product
        return eye.expand(n, -1, -1).contiguous()
    if metric != "fisher":
        raise ValueError(f"Unknown output_metric {metric!r}; expected 'euclidean' or 'fisher'.")
    p = torch.softmax(output, dim=1)
    q = p.sqrt()
    return q.unsqueeze(2) * eye - q.unsqueeze(2) * p.unsqueeze(1)


def _elementwise_derivative(activations, a):
    """``f'(a)`` of the composition of elementwise modules, by one autograd pass."""
    with torch.enable_grad():
        x = a.detach().requires_grad_(True)
        out = x
        for module in activations:
            out = module(out)
        (derivative,) = torch.autograd.grad(out.sum(), x)
    return derivative
