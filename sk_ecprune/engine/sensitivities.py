"""Output sensitivities: how much a shift of each unit's pre-activation moves the output.

For unit ``i`` of a linear layer, ``s_i(x) = |R J_i(x)|^2`` with ``J_i = dy/da_i`` at one
sample and ``R^T R`` the output metric (the identity, or the softmax Fisher of the logits).
Two ways to compute them, one answer:

- :func:`output_sensitivities`: any module, one autograd backward pass per output;
- :func:`chain_sensitivities`: a plain chain of linear layers and elementwise activations.
  For ``y = L_n(f_{n-1}(... f_1(L_1(x))))`` the Jacobian with respect to each pre-activation
  follows from the one above it: ``J_l = (J_{l+1} W_{l+1}) * f_l'(a_l)``. Carrying all ``K``
  output rows at once gives every layer's sensitivities in one batched matrix product per
  layer instead of ``K`` backward passes: several times cheaper on small networks, which
  matters for schedules that score the network again at every step.

:func:`recorded_sensitivities` streams a data set through a module and yields, batch by
batch, every layer's input and sensitivities, by whichever way applies.
"""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_choice
from .masks import effective_weight
from .recording import LayerRecorder, forward_recorded

#: How a change of the output is measured: Euclidean norm, or the softmax Fisher metric.
METRICS = ("euclidean", "fisher")

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

    Same definition as :func:`output_sensitivities`: with ``J`` the
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
    check_choice("output_metric", metric, METRICS)
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


def output_sensitivities(
    output: torch.Tensor, preacts: list[torch.Tensor], metric: str = "euclidean"
) -> list[torch.Tensor]:
    """``s_i(x)``, per layer: how much a shift of pre-activation ``a_i`` moves the output.

    With ``J[k, i] = d y_k / d a_i`` at one sample: ``"euclidean"`` gives ``s_i = sum_k J_ki^2``;
    ``"fisher"`` gives ``s_i = J_i^T F J_i`` with the softmax Fisher ``F = diag(p) - p p^T`` of
    the logits ``output``, i.e. ``sum_k p_k J_ki^2 - (sum_k p_k J_ki)^2``, which measures the
    change of the predicted class probabilities instead of the logits.

    One backward pass per output: since each layer is applied once per sample, the gradient
    of the batch sum of ``y_k`` holds the per-sample derivatives. The sums are accumulated
    pass by pass, so the full Jacobian is never stored. (``vmap`` over ``jacrev`` would batch
    the passes, but fails on ``nn.PReLU``.)
    """
    check_choice("output_metric", metric, METRICS)
    n_outputs = output.shape[1]
    weights = torch.softmax(output.detach(), dim=1) if metric == "fisher" else None
    squares = [torch.zeros_like(a) for a in preacts]
    means = [torch.zeros_like(a) for a in preacts] if metric == "fisher" else None
    for k in range(n_outputs):
        grads = torch.autograd.grad(
            output[:, k].sum(), preacts, retain_graph=k < n_outputs - 1, allow_unused=True
        )
        for layer, g in enumerate(grads):
            if g is None:
                continue
            if weights is None:
                squares[layer] += g.square()
            else:
                p = weights[:, k : k + 1]
                squares[layer] += p * g.square()
                means[layer] += p * g
    if means is None:
        return squares
    # sum_k p_k (J_k - mean)^2 is a variance: never negative, but rounding can make it so
    return [(sq - m.square()).clamp_min(0) for sq, m in zip(squares, means)]


def recorded_sensitivities(module, layers, data, metric="euclidean"):
    """Yield ``(inputs, sensitivities, weights)`` per batch of ``data``.

    ``inputs[l]`` is the input ``z`` of ``layers[l]`` (shape ``(n, in_features)``),
    ``sensitivities[l]`` its units' ``s`` (shape ``(n, out_features)``) and ``weights`` the
    batch's row weights ``wb`` of :class:`~sk_ecprune.engine.recording.ScoringData` (None
    for unweighted data), for the caller's weighted means. A plain chain
    (:func:`linear_chain`) takes the closed form, where its Jacobian blocks fit
    (:data:`MAX_JACOBIAN_ELEMENTS`); every other module, one autograd pass per output.
    """
    chain = linear_chain(module, layers)
    with LayerRecorder(layers) as recorder:
        for Xb, _, wb in data:
            sensitivities = None
            if chain is not None:
                output = forward_recorded(module, recorder, Xb, keep_graph=False)
                sensitivities = chain_sensitivities(chain, recorder.outputs, output, metric)
            if sensitivities is None:
                output = forward_recorded(module, recorder, Xb)
                sensitivities = output_sensitivities(output, recorder.outputs, metric)
            yield [z.detach() for z in recorder.inputs], [s.detach() for s in sensitivities], wb
            recorder.clear()
