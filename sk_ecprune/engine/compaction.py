"""Physical compaction of a pruned MLP: drop the hidden units pruning has disconnected.

Pruning leaves exact zeros in the weight matrices, so the network keeps its dense shape and
its dense cost. Two kinds of hidden unit can be removed without changing what it computes:

* a unit whose incoming weights (row ``j`` of ``W^l``) are all zero outputs the constant
  ``c_j = sigma(b_j)``, whatever the input; ``W^{l+1}[:, j] * c_j`` is folded into the next
  layer's bias and the unit is dropped;
* a unit whose outgoing weights (column ``j`` of ``W^{l+1}``) are all zero is never read;
  it is dropped (row ``j`` of ``W^l`` and ``b^l``).

Each removal can create new candidates (folding unit ``j`` removes a column of ``W^{l+1}``,
which may leave a row of ``W^{l+1}`` empty, and removing a row of ``W^l`` may leave a column
of ``W^l`` empty), so both rules are applied until neither finds anything. What remains
are exactly the hidden units that lie on a path of non-zero weights from an input feature
to an output. Input features and outputs are never removed.

The chain is recognised by :func:`~.chain.linear_groups`, as for the closed-form
sensitivities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune

from .chain import ELEMENTWISE, linear_groups

__all__ = ["compact", "hidden_widths"]

#: Elementwise classes -> the constructor arguments that rebuild an equal module. The
#: result is rebuilt from these rather than deep-copied so that it carries no hooks, masks
#: or subclass behaviour of the input. ``nn.PReLU``'s slopes are copied separately, sliced
#: with the units when there is one slope per unit.
_REBUILD = {
    nn.Identity: (),
    nn.ReLU: ("inplace",),
    nn.PReLU: (),
    nn.LeakyReLU: ("negative_slope", "inplace"),
    nn.ELU: ("alpha", "inplace"),
    nn.Tanh: (),
    nn.Sigmoid: (),
    nn.GELU: ("approximate",),
    nn.SiLU: ("inplace",),
    nn.Softplus: ("beta", "threshold"),
    nn.Dropout: ("p", "inplace"),
}
assert set(_REBUILD) == set(ELEMENTWISE)  # every element a chain may hold can be rebuilt


@dataclass
class _Block:
    """Working copy of one layer: detached tensors that compaction slices and folds into.

    ``units`` holds the indices, in the original layer, of the output units still kept;
    it slices per-unit activation parameters once compaction is done.
    """

    where: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    weight_grad: bool
    bias_grad: bool
    training: bool
    activations: list
    units: torch.Tensor

    def keep(self, mask: torch.Tensor) -> None:
        """Keep only the output units where ``mask`` is True."""
        self.weight = self.weight[mask]
        self.bias = None if self.bias is None else self.bias[mask]
        self.units = self.units[mask]


def compact(module: nn.Module, *, atol: float = 0.0) -> nn.Sequential:
    """A new, smaller ``nn.Sequential`` computing what ``module`` computes.

    Hidden units whose incoming weights are all zero are replaced by their constant output
    folded into the next layer's bias; hidden units whose outgoing weights are all zero
    are dropped; both are repeated until nothing changes (see the module docstring).

    Parameters
    ----------
    module : torch.nn.Module
        An ``nn.Sequential`` (possibly nested) of ``nn.Linear`` layers and elementwise
        modules (:data:`ELEMENTWISE`), or a module whose ``sequential_chain()`` returns one
        and whose ``forward`` is defined by the same class as ``sequential_chain`` (such as
        the package's ``MLP``). Layers may still carry ``torch.nn.utils.prune``
        reparametrisations: the effective ``weight_orig * weight_mask`` (and likewise for
        a pruned bias or PReLU slope) is used. ``module`` is never modified.
    atol : float, default=0.0
        A weight counts as zero when ``abs(w) <= atol``. With the default only exact zeros
        do, and the result is equivalent up to floating-point rounding of the folded
        biases; a positive value also drops weights up to ``atol``, which changes the
        outputs by about that much times the activations they multiply.

    Returns
    -------
    torch.nn.Sequential
        A flat ``Sequential`` with the same elements in the same order as the flattened
        chain: new ``nn.Linear`` layers of the compacted shapes, and new elementwise
        modules (per-unit ``nn.PReLU`` slopes sliced with their units, a single slope
        kept). Same number of inputs and outputs, same device and dtype per parameter,
        plain ``nn.Parameter``s with the input's ``requires_grad``, no hooks, no buffers,
        each element in the training mode of the element it replaces. A layer without a
        bias gets one (with the ``requires_grad`` of its weight) only when a non-zero
        constant is folded into it.

        When no input feature reaches any output, the output is constant: every hidden
        layer then has 0 units (``Linear(n_features, 0)``, ...,
        ``Linear(0, n_outputs)``) and the constant is the last layer's bias. Zero-width
        layers are valid torch modules, keep the depth and the layer types (so the result
        still loads into a network of the same architecture and ``hidden_widths``), and
        hold no weights.

    Raises
    ------
    ValueError
        If ``module`` is not one of the supported chains (the message says what is), its
        layer shapes do not chain, a ``PReLU`` has neither one slope nor one per unit, or
        ``atol`` is negative or not finite.

    Notes
    -----
    Equivalence holds for finite inputs (a dropped zero weight times an infinite input
    would have given NaN) and in evaluation mode: constants are computed with
    ``nn.Dropout`` as the identity, as ``eval()`` applies it, so in training mode a folded
    unit is no longer randomly dropped. Per-unit ``PReLU`` slopes are taken along
    dimension 1, as torch applies them to ``(batch, width)`` inputs.
    """
    atol = _check_atol(atol)
    prefix, groups, training = _recognise(module)
    with torch.no_grad():
        prefix = [_rebuild(item) for item in prefix]
        blocks = [_block(group) for group in groups]
        _check_shapes(blocks, prefix)
        while _fold_dead_units(blocks, atol) | _drop_unused_units(blocks, atol):
            pass  # each pass may expose new all-zero rows or columns
        compacted = nn.Sequential(*prefix, *_build(blocks))
    compacted.training = training
    return compacted


def hidden_widths(module: nn.Module) -> tuple[int, ...]:
    """Widths of the hidden layers of a chain: ``out_features`` of all but the last Linear.

    Parameters
    ----------
    module : torch.nn.Module
        A chain accepted by :func:`compact`.

    Returns
    -------
    tuple of int
        One width per hidden layer, in order; ``()`` for zero or one ``nn.Linear``. For a
        compacted network, the ``hidden_layer_sizes`` of the same architecture.

    Raises
    ------
    ValueError
        If ``module`` is not a supported chain.
    """
    _, groups, _ = _recognise(module)
    return tuple(int(group.linear.out_features) for group in groups[:-1])


def _recognise(module):
    """``(prefix, groups, training)`` of a chain that can be compacted, or ValueError."""
    if isinstance(module, nn.Module):  # first: a lazy layer's initialisation is a hook
        for where, item in module.named_modules():
            _check_materialised(item, where or type(module).__name__)
    prefix, groups = linear_groups(module)
    chain = module.sequential_chain() if not isinstance(module, nn.Sequential) else module
    return prefix, groups, chain.training


def _elementwise_class(item):
    """The class of :data:`~.chain.ELEMENTWISE` whose ``forward`` ``item`` keeps."""
    return next(cls for cls in ELEMENTWISE
                if isinstance(item, cls) and type(item).forward is cls.forward)


def _check_materialised(item, where):
    if any(nn.parameter.is_lazy(p) for p in item.parameters(recurse=False)):
        raise ValueError(f"{where} is a lazy layer that has not been initialised; run it once first.")


def _check_atol(atol):
    atol = float(atol)
    if not (math.isfinite(atol) and atol >= 0):
        raise ValueError(f"atol must be a finite number >= 0, got {atol!r}.")
    return atol


# --- working copies -------------------------------------------------------------------


def _effective(module, name):
    """``(detached copy of tensor name, its requires_grad)``, through any pruning mask.

    Reads ``name_orig * name_mask`` rather than the ``name`` attribute, which pruning only
    refreshes at the next forward pass and may be stale.
    """
    params = dict(module.named_parameters(recurse=False))
    buffers = dict(module.named_buffers(recurse=False))
    if prune.is_pruned(module) and f"{name}_orig" in params and f"{name}_mask" in buffers:
        original = params[f"{name}_orig"]
        return (original * buffers[f"{name}_mask"]).detach().clone(), original.requires_grad
    tensor = getattr(module, name)
    if tensor is None:
        return None, False
    return tensor.detach().clone(), tensor.requires_grad


def _block(group):
    weight, weight_grad = _effective(group.linear, "weight")
    bias, bias_grad = _effective(group.linear, "bias")
    units = torch.arange(weight.shape[0], device=weight.device)
    activations = [_rebuild(item) for item in group.activations]
    return _Block(group.where, weight, bias, weight_grad, bias_grad, group.linear.training,
                  activations, units)


def _rebuild(item):
    """A new module of the torch class ``item`` keeps, with the same settings and slopes."""
    cls = _elementwise_class(item)
    if cls is nn.PReLU:
        slopes, grad = _effective(item, "weight")
        rebuilt = _prelu(slopes, grad)
    else:
        rebuilt = cls(**{name: getattr(item, name) for name in _REBUILD[cls]})
    return rebuilt.train(item.training)


def _prelu(slopes, requires_grad):
    # Built on the meta device, then given the slopes: no allocation, no init warnings.
    prelu = nn.PReLU(device="meta")
    prelu.num_parameters = slopes.numel()
    prelu.weight = nn.Parameter(slopes, requires_grad=requires_grad)
    return prelu


def _check_shapes(blocks, prefix):
    """Refuse chains whose forward would fail, before relying on their shapes."""
    for previous, block in zip(blocks[:-1], blocks[1:]):
        if block.weight.shape[1] != previous.weight.shape[0]:
            raise ValueError(
                f"{block.where} takes {block.weight.shape[1]} inputs but {previous.where} "
                f"produces {previous.weight.shape[0]}."
            )
    if blocks:
        _check_slopes(prefix, blocks[0].weight.shape[1], "the inputs")
    for block in blocks:
        _check_slopes(block.activations, block.weight.shape[0], block.where)


def _check_slopes(activations, width, where):
    for act in activations:
        if isinstance(act, nn.PReLU) and act.num_parameters not in (1, width):
            raise ValueError(
                f"A PReLU after {where} has {act.num_parameters} slopes; expected 1 or one "
                f"per unit ({width})."
            )


# --- compaction -----------------------------------------------------------------------


def _fold_dead_units(blocks, atol):
    """Fold units with all-zero incoming weights into the next bias; True if any was.

    Runs forward, so constants created by one layer's folds are caught in the next.
    """
    changed = False
    for block, following in zip(blocks[:-1], blocks[1:]):
        dead = _zero_rows(block.weight, atol)
        if not dead.any():
            continue
        constant = _constant_outputs(block)[dead].to(following.weight.dtype)
        shift = following.weight[:, dead] @ constant
        if following.bias is None and shift.any():
            following.bias = torch.zeros_like(shift)
            following.bias_grad = following.weight_grad
        if following.bias is not None:
            following.bias = following.bias + shift
        block.keep(~dead)
        following.weight = following.weight[:, ~dead]
        changed = True
    return changed


def _drop_unused_units(blocks, atol):
    """Drop units with all-zero outgoing weights; True if any was.

    Runs backward, so units left unused by one layer's removals are caught in the one
    before. Removing unused units never creates dead ones (it removes all-zero columns
    only), so after one pass of each rule a second finds nothing.
    """
    changed = False
    for block, following in reversed(list(zip(blocks[:-1], blocks[1:]))):
        unused = _zero_columns(following.weight, atol)
        if unused.any():
            block.keep(~unused)
            following.weight = following.weight[:, ~unused]
            changed = True
    return changed


def _zero_rows(weight, atol):
    # An empty row (no inputs left) counts as zero: all() of nothing is True.
    return (weight.abs() <= atol).all(dim=1)


def _zero_columns(weight, atol):
    return (weight.abs() <= atol).all(dim=0)


def _constant_outputs(block):
    """Each unit's output when its incoming weights are zero: the activations of its bias."""
    bias = block.weight.new_zeros(block.weight.shape[0]) if block.bias is None else block.bias
    # A (1, width) batch, so per-unit PReLU slopes apply along the units; a copy, because
    # in-place activations would otherwise overwrite the working bias.
    x = bias.clone().unsqueeze(0)
    for act in block.activations:
        x = _apply_eval(act, x, block.units)
    return x[0]


def _apply_eval(act, x, units):
    """``act(x)`` in evaluation mode, for the kept ``units`` of its layer."""
    if isinstance(act, nn.Dropout):
        return x  # what eval() makes of it; avoids mutating the module's training flag
    if isinstance(act, nn.PReLU) and act.num_parameters > 1:
        return nn.functional.prelu(x, act.weight[units.to(act.weight.device)])
    return act(x)


# --- building the result --------------------------------------------------------------


def _build(blocks):
    """The new ``Linear`` and elementwise modules of the compacted blocks, in order."""
    modules = []
    for block in blocks:
        modules.append(_linear(block))
        modules.extend(_sliced(act, block.units) for act in block.activations)
    return modules


def _linear(block):
    # Built on the meta device, then given the compacted tensors: no allocation of the
    # original size and no warning for zero-width layers.
    out_features, in_features = block.weight.shape
    linear = nn.Linear(1, 1, bias=block.bias is not None, device="meta")
    linear.in_features, linear.out_features = in_features, out_features
    linear.weight = nn.Parameter(block.weight.contiguous(), requires_grad=block.weight_grad)
    if block.bias is not None:
        linear.bias = nn.Parameter(block.bias.contiguous(), requires_grad=block.bias_grad)
    return linear.train(block.training)


def _sliced(act, units):
    """``act`` for the kept ``units``: per-unit PReLU slopes sliced, anything else as is."""
    if not isinstance(act, nn.PReLU) or act.num_parameters == 1:
        return act
    slopes = act.weight.detach()[units.to(act.weight.device)].contiguous()
    return _prelu(slopes, act.weight.requires_grad).train(act.training)
