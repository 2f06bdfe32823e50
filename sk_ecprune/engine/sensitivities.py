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
from .chain import NotAChain, linear_groups
from .masks import effective_weight
from .recording import LayerRecorder, forward_recorded

#: How a change of the output is measured: Euclidean norm, or the softmax Fisher metric.
METRICS = ("euclidean", "fisher")

#: Largest Jacobian block (batch rows x outputs x width) built at once; beyond, autograd.
MAX_JACOBIAN_ELEMENTS = 2**25


def linear_chain(module: nn.Module, layers: list[nn.Linear]):
    """``[(linear, [elementwise modules after it]), ...]``, or None if not a plain chain.

    The closed form is taken only where the module's forward pass is known to be the chain
    of ``layers`` (:func:`~.chain.linear_groups`: a subclass that overrides ``forward`` alone,
    an unknown element or a forward hook send it to autograd).
    """
    try:
        _, groups = linear_groups(module, allow_linear_hooks=True)
    except NotAChain:
        return None
    if [group.linear for group in groups] != list(layers):
        return None
    return [(group.linear, group.activations) for group in groups]


def chain_sensitivities(groups, preacts, output, metric="euclidean", of="preactivations",
                        lowest=0):
    """Per-sample sensitivities of every layer of a chain, or None if too large.

    Same definition as :func:`output_sensitivities`: with ``J`` the Jacobian of the output
    with respect to a layer's pre-activation (``of="preactivations"``, the ``s`` of EC) or
    its input (``of="inputs"``, the ``S`` of a hidden unit's output, which structured pruning
    removes), ``"euclidean"`` gives ``sum_k J_k^2`` and ``"fisher"`` gives ``J^T F J`` with
    ``F = diag(p) - p p^T``.

    Both are squared norms ``|R J|^2``: ``R = I`` for the Euclidean metric and, for the
    Fisher one, ``R = (I - q q^T) diag(q)`` with ``q = sqrt(p)`` (``R^T R = F``, since
    ``I - q q^T`` is a projection when ``sum(p) = 1``). ``R J`` is carried down the chain in
    place of ``J``, so the Fisher metric costs no more than the Euclidean one. Rows are
    processed in chunks so that no block exceeds :data:`MAX_JACOBIAN_ELEMENTS`; None when
    a single row would. Layers below ``lowest`` are skipped (their entries are None): the
    chain is carried down only as far as the lowest layer asked for.
    """
    check_choice("of", of, ("preactivations", "inputs"))
    n, n_outputs = output.shape
    widths = [linear.out_features for linear, _ in groups]
    if of == "inputs":
        widths += [linear.in_features for linear, _ in groups]
    chunk = MAX_JACOBIAN_ELEMENTS // (n_outputs * max(widths))
    if chunk < 1:
        return None
    parts = [
        _chunk_sensitivities(groups, [a[start : start + chunk] for a in preacts],
                             output[start : start + chunk], metric, of == "inputs", lowest)
        for start in range(0, n, chunk)
    ]
    if len(parts) == 1:
        return parts[0]
    return [None if layer_parts[0] is None else torch.cat(layer_parts)
            for layer_parts in zip(*parts)]


def _chunk_sensitivities(groups, preacts, output, metric, of_inputs, lowest=0):
    sensitivities = [None] * len(groups)
    rotated = _output_metric_root(output.detach(), metric)  # R J, shape (n, n_outputs, width)
    for index in reversed(range(lowest, len(groups))):
        linear, activations = groups[index]
        if activations:
            derivative = _elementwise_derivative(activations, preacts[index].detach())
            rotated = rotated * derivative.unsqueeze(1)
        if not of_inputs:
            sensitivities[index] = rotated.square().sum(1)
        if index > lowest or of_inputs:
            rotated = rotated @ effective_weight(linear).detach()  # through the layer
        if of_inputs:
            sensitivities[index] = rotated.square().sum(1)
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


def recorded_sensitivities(module, layers, data, metric="euclidean", of="preactivations",
                           lowest=0):
    """Yield ``(inputs, sensitivities, weights)`` per batch of ``data``.

    ``inputs[l]`` is the input ``z`` of ``layers[l]`` (shape ``(n, in_features)``),
    ``sensitivities[l]`` the sensitivities of its units' pre-activations (shape
    ``(n, out_features)``), or with ``of="inputs"`` of its inputs (shape like
    ``inputs[l]``), and ``weights`` the batch's row weights ``wb`` of
    :class:`~sk_ecprune.engine.recording.ScoringData` (None for unweighted data), for the
    caller's weighted means. A plain chain (:func:`linear_chain`) takes the closed form,
    where its Jacobian blocks fit (:data:`MAX_JACOBIAN_ELEMENTS`); every other module, one
    autograd pass per output. With ``lowest``, the closed form skips the layers below it
    (their sensitivities are None); autograd computes them all.
    """
    chain = linear_chain(module, layers)
    with LayerRecorder(layers) as recorder:
        for Xb, _, wb in data:
            sensitivities = None
            if chain is not None:
                output = forward_recorded(module, recorder, Xb, keep_graph=False)
                sensitivities = chain_sensitivities(chain, recorder.outputs, output, metric, of,
                                                    lowest)
            if sensitivities is None:
                output = forward_recorded(module, recorder, Xb)
                targets = recorder.inputs if of == "inputs" else recorder.outputs
                sensitivities = output_sensitivities(output, targets, metric)
            yield ([z.detach() for z in recorder.inputs],
                   [None if s is None else s.detach() for s in sensitivities], wb)
            recorder.clear()
