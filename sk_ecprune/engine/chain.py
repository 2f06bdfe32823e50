"""Recognising a plain chain: ``nn.Linear`` layers with elementwise modules between them.

Two parts of the engine may rely on a module's forward pass being such a chain: the
closed-form sensitivities (:mod:`.sensitivities`) and compaction (:mod:`.compaction`). Both
ask :func:`linear_groups`, which accepts a module only where its forward pass is *known* to
be the chain:

- an ``nn.Sequential`` (possibly nested) that keeps ``nn.Sequential.forward``, or a module
  whose ``sequential_chain()`` returns one and whose ``forward`` is defined by the same class
  as that method (a subclass that overrides ``forward`` alone may compute something else);
- every element keeps the ``forward`` of its torch class: ``nn.Linear`` or one of
  :data:`ELEMENTWISE`;
- no forward hooks on the module or its elements, which could change what they compute,
  except ``torch.nn.utils.prune``'s pre-hooks (they recompute ``weight`` from its mask) and,
  when the caller says so, the engine's own recording hooks on the linear layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torch.nn.utils import prune

__all__ = ["ELEMENTWISE", "Group", "NotAChain", "linear_groups"]

#: Modules applied elementwise (in evaluation mode): their derivative is diagonal, and
#: they may sit between the layers of a chain.
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

SUPPORTED = (
    "Supported: an nn.Sequential (possibly nested, each keeping nn.Sequential.forward) of "
    "nn.Linear layers and elementwise modules ("
    + ", ".join(cls.__name__ for cls in ELEMENTWISE)
    + "), or a module whose sequential_chain() returns such an nn.Sequential and whose "
    "forward is defined by the same class as sequential_chain; no forward hooks other than "
    "torch.nn.utils.prune's."
)


class NotAChain(ValueError):
    """The module's forward pass is not known to be a plain chain; the message says why."""


@dataclass
class Group:
    """One ``nn.Linear`` of a chain, the elementwise modules applied after it, its path."""

    linear: nn.Linear
    where: str
    activations: list = field(default_factory=list)


def linear_groups(module: nn.Module, *, allow_linear_hooks: bool = False):
    """``(prefix, groups)`` of a chain, or :class:`NotAChain`.

    ``prefix`` lists the elementwise modules before the first ``nn.Linear`` (they only
    transform the inputs); ``groups`` one :class:`Group` per ``nn.Linear``, in forward order.
    ``allow_linear_hooks`` tolerates forward hooks on the linear layers (the engine's own
    recording hooks, which only read).
    """
    chain, root = _chain_of(module)
    prefix, groups = [], []
    for where, item in _flatten(chain, root):
        if _keeps_forward(item, (nn.Linear,)):
            if not allow_linear_hooks:
                _check_hooks(item, where)
            groups.append(Group(item, where))
            continue
        _check_hooks(item, where)
        if not _keeps_forward(item, ELEMENTWISE):
            raise NotAChain(f"{where} is a {type(item).__name__}, not supported. {SUPPORTED}")
        if groups:
            groups[-1].activations.append(item)
        else:
            prefix.append(item)
    return prefix, groups


def _chain_of(module):
    """``(sequential, path)`` whose elements ``module``'s forward applies, or NotAChain."""
    if not isinstance(module, nn.Module):
        raise NotAChain(f"Expected a torch.nn.Module, got {type(module).__name__}. {SUPPORTED}")
    name = type(module).__name__
    if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
        return module, ""
    defines_chain = _defined_by(type(module), "sequential_chain")
    if defines_chain is None:
        kind = ("an nn.Sequential subclass overriding forward" if isinstance(module, nn.Sequential)
                else "not an nn.Sequential and has no sequential_chain()")
        raise NotAChain(f"{name} is {kind}. {SUPPORTED}")
    defines_forward = _defined_by(type(module), "forward")
    if defines_forward is not defines_chain:
        raise NotAChain(
            f"{name}'s forward is defined by {defines_forward.__name__} but sequential_chain "
            f"by {defines_chain.__name__}, so the chain need not be what forward computes. "
            f"{SUPPORTED}"
        )
    _check_hooks(module, name)
    chain = module.sequential_chain()
    if not isinstance(chain, nn.Sequential):
        raise NotAChain(f"{name}.sequential_chain() returned a {type(chain).__name__}, not an "
                        f"nn.Sequential. {SUPPORTED}")
    return chain, "sequential_chain()"


def _flatten(sequential, path):
    """``(path, element)`` of nested ``Sequential``s in forward order, or NotAChain."""
    if type(sequential).forward is not nn.Sequential.forward:
        raise NotAChain(f"{path or 'The module'} is a {type(sequential).__name__} whose "
                        f"forward overrides nn.Sequential.forward. {SUPPORTED}")
    _check_hooks(sequential, path or "The module")
    # _modules, not named_children(): the latter skips a module listed twice, forward does not
    for name, item in sequential._modules.items():
        where = f"{path}.{name}" if path else name
        if isinstance(item, nn.Sequential):
            yield from _flatten(item, where)
        else:
            yield where, item


def _defined_by(cls, name):
    """The class of ``cls``'s MRO that defines attribute ``name`` (None if none does)."""
    return next((klass for klass in cls.__mro__ if name in vars(klass)), None)


def _keeps_forward(item, classes):
    """Whether ``item`` is an instance of one of ``classes`` that keeps its ``forward``."""
    return any(isinstance(item, cls) and type(item).forward is cls.forward for cls in classes)


def _check_hooks(item, where):
    pre = [h for h in item._forward_pre_hooks.values() if not isinstance(h, prune.BasePruningMethod)]
    if pre or item._forward_hooks:
        raise NotAChain(f"{where} ({type(item).__name__}) has forward hooks, which may change "
                        f"what it computes. {SUPPORTED}")
