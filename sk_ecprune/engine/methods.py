"""One protocol for every compression method: the :class:`Method`, its registry, its loop.

A method is an object whose options are its constructor's arguments. Given the recorded
statistics of a layer (or of the network), it changes the layer -- removes weights
(``kind = "weight"``), removes hidden units (``"neuron"``) or rounds weights to a grid
(``"quantize"``) -- and reports what it changed as a :class:`LayerChange`. Whether it
compensated follows from what it changed: a bias shift or a move of the kept weights.

Every method runs through :func:`run_steps`, the engine's one loop: for each step of the
schedule, :meth:`Method.plan` looks at the whole network once (global ranking, a budget per
layer), then :meth:`Method.change` changes the layers one after the other, from the input
side, so that a method may measure each layer again on the network the earlier layers'
changes left (as EC-OBS and the quantisers do).

:data:`METHODS` is the one registry of names: ``METHODS.get("ec", "weight")`` is the method
that ``method="ec"`` means for weight pruning. ``method=`` accepts a name or an instance,
as skorch's ``optimizer=`` accepts a name or a class. Adding a method of any kind is one
class and one :func:`register_method`.
"""

from __future__ import annotations

import inspect
from collections.abc import MutableMapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .recording import scoring_session

__all__ = ["KINDS", "METHODS", "LayerChange", "Method", "Step", "make_generator",
           "register_method", "resolve_method", "run_steps"]

#: What a method of each kind changes.
KINDS = {"weight": "removes weights", "neuron": "removes hidden units",
         "quantize": "rounds weights to a grid"}


@dataclass
class LayerChange:
    """What a method did to one layer's kept parameters in one step.

    Attributes
    ----------
    bias_shift : torch.Tensor or None
        The change of the bias (None if it did not move).
    weight_change : float
        Norm of the change of the kept weights that the method made to compensate (0 if
        they did not move).
    added_damping : float
        Damping a factorisation had to add beyond the method's own (relative; 0 if none).
    compensated : bool
        Whether the method compensated its change in this layer.
    quantization : tuple or None
        A quantiser's ``(scales, codes)`` of the layer (numpy float32 and int8).
    """

    bias_shift: torch.Tensor | None = None
    weight_change: float = 0.0
    added_damping: float = 0.0
    compensated: bool = False
    quantization: tuple | None = None


@dataclass
class Step:
    """One step of a schedule, as a method sees it.

    ``target`` is what the step reaches: the fraction of weights absent after it (pruning)
    or the number of bits (quantisation). The other fields are the call's options.
    """

    module: nn.Module
    layers: list
    data: object  # the ScoringData of the step
    target: float
    method_name: str
    scope: str = "global"
    layer_floor: float = 0.0
    compensate: bool | None = None
    output_metric: str = "euclidean"
    loss: object = None
    generator: torch.Generator | None = None


class Method:
    """Base class of every compression method (see the module docstring).

    A subclass sets :attr:`kind` and defines :meth:`change` (and :meth:`plan` if the layers'
    changes are decided together); its options are its constructor's keyword arguments,
    stored under their own names (the scikit-learn convention), which :meth:`__repr__`
    shows. The first line of the class docstring is how it describes itself.
    """

    kind: str = "weight"

    def plan(self, step: Step):
        """What the step will do, decided on the whole network; passed to :meth:`change`."""
        return None

    def change(self, step: Step, plan, index: int) -> LayerChange:
        """Change ``step.layers[index]`` in place and report what changed."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line: what the method computes."""
        return (inspect.getdoc(self) or type(self).__name__).splitlines()[0]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's options and their current values (scikit-learn's protocol, so
        that an estimator's ``method=ECOBS(...)`` clones and ``method__damp`` is searched)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters
                 if p not in ("self", "args", "kwargs")]
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    def set_params(self, **params) -> "Method":
        """Set options by name (scikit-learn's protocol); an unknown name is an error."""
        known = self.get_params()
        for name, value in params.items():
            if name not in known:
                raise ValueError(f"{type(self).__name__} has no option {name!r}; its options "
                                 f"are {sorted(known)}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({options})"


class MethodRegistry:
    """Names of methods, per kind: the one registry (:data:`METHODS`).

    An entry is a :class:`Method` subclass (built with its default options when named) or
    an instance (a variant with other options, used as it is).
    """

    def __init__(self):
        self._entries = {}  # (kind, name) -> Method class or instance

    def register(self, name: str, method) -> None:
        kind = _kind_of(method)
        self._entries[(kind, name)] = method

    def remove(self, name: str, kind: str) -> None:
        del self._entries[(kind, name)]

    def entry(self, name: str, kind: str):
        return self._entries[(kind, name)]

    def names(self, kind: str) -> list[str]:
        return [name for (k, name) in self._entries if k == kind]

    def get(self, name: str, kind: str) -> Method:
        """The method ``name`` of ``kind``, built, or a ValueError listing the known ones."""
        if (kind, name) not in self._entries:
            raise ValueError(f"Unknown method {name!r} (a method that {KINDS.get(kind, kind)})"
                             f"; expected one of {sorted(self.names(kind))}.")
        entry = self._entries[(kind, name)]
        return entry() if isinstance(entry, type) else entry

    def view(self, kind: str, wrap=None) -> "RegistryView":
        """A dict-like view of the names of one kind (:data:`~.scoring.SCORERS` is one);
        ``wrap`` turns what is stored through it into a method (a function, say)."""
        return RegistryView(self, kind, wrap)


class RegistryView(MutableMapping):
    """The methods of one kind in :data:`METHODS`, as a mutable mapping name -> entry."""

    def __init__(self, registry: MethodRegistry, kind: str, wrap=None):
        self.registry, self.kind, self.wrap = registry, kind, wrap

    def __getitem__(self, name):
        try:
            return self.registry.entry(name, self.kind)
        except KeyError:
            raise KeyError(name) from None

    def __setitem__(self, name, method):
        self.registry.register(name, self.wrap(method) if self.wrap else method)

    def __delitem__(self, name):
        try:
            self.registry.remove(name, self.kind)
        except KeyError:
            raise KeyError(name) from None

    def __iter__(self):
        return iter(self.registry.names(self.kind))

    def __len__(self):
        return len(self.registry.names(self.kind))

    def __repr__(self):
        return f"{type(self).__name__}({dict(self)!r})"


#: The one registry: method name -> method, per kind. :func:`register_method` adds to it.
METHODS = MethodRegistry()


def _kind_of(method) -> str:
    is_class = isinstance(method, type) and issubclass(method, Method)
    if not (is_class or isinstance(method, Method)) or method.kind not in KINDS:
        raise TypeError(f"A method must be a Method subclass or instance with a kind among "
                        f"{sorted(KINDS)}; got {method!r}.")
    return method.kind


def register_method(name: str, method=None):
    """Register ``method`` (a :class:`Method` subclass or instance) under ``name`` for its
    kind; used as a class decorator when ``method`` is omitted."""
    if method is not None:
        METHODS.register(name, method)
        return method

    def add(cls):
        METHODS.register(name, cls)
        return cls

    return add


def resolve_method(method, kind: str) -> tuple[Method, str]:
    """``(instance, name)`` for ``method=``: a registered name or a :class:`Method` instance
    of ``kind``; a clear error otherwise."""
    if isinstance(method, str):
        return METHODS.get(method, kind), method
    if isinstance(method, type) and issubclass(method, Method):
        method = method()
    if not isinstance(method, Method):
        raise ValueError(f"method must be a name among {sorted(METHODS.names(kind))} or a "
                         f"Method instance; got {method!r}.")
    if method.kind != kind:
        raise ValueError(f"method={method!r} {KINDS.get(method.kind, method.kind)}; here a "
                         f"method that {KINDS[kind]} is needed.")
    return method, repr(method)


def make_generator(random_state, device="cpu") -> torch.Generator:
    """A torch generator from an int seed, an existing generator, or ``None`` (fresh entropy)."""
    if isinstance(random_state, torch.Generator):
        return random_state
    generator = torch.Generator(device=device)
    if random_state is None:
        generator.seed()
    else:
        generator.manual_seed(int(random_state))
    return generator


@dataclass
class LayerTotal:
    """What the steps of :func:`run_steps` did to one layer, summed."""

    bias_shift: torch.Tensor | None = None
    weight_change: float = 0.0
    added_damping: float = 0.0
    compensated: bool = False
    changes: list = field(default_factory=list)

    def add(self, change: LayerChange) -> None:
        if change.bias_shift is not None:
            shift = change.bias_shift.detach().double()
            self.bias_shift = shift if self.bias_shift is None else self.bias_shift + shift
        self.weight_change += float(change.weight_change)
        self.added_damping = max(self.added_damping, float(change.added_damping))
        self.compensated = self.compensated or change.compensated
        self.changes.append(change)


def run_steps(method: Method, module: nn.Module, targets, data, *, method_name: str,
              batch_size: int = 1024, check_finite: bool = True, random_state=None,
              **options) -> list[LayerTotal]:
    """Run ``method`` over the layers of ``module``, once per target of the schedule.

    ``data = (X, y, sample_weight)``. Each step opens a scoring session (the module in
    evaluation mode, the data streamed in batches), lets the method plan on the whole
    network, then change each layer from the input side. Returns per layer what changed.
    """
    X, y, sample_weight = data
    totals = None
    for target in targets:
        with scoring_session(module, X, y, batch_size, check_finite,
                             sample_weight) as (layers, scoring_data):
            step = Step(module, layers, scoring_data, target, method_name,
                        generator=make_generator(random_state), **options)
            totals = totals or [LayerTotal() for _ in layers]
            plan = method.plan(step)
            for index in range(len(layers)):
                totals[index].add(method.change(step, plan, index))
        check_finite = False  # X passed the first step's check
    return totals
