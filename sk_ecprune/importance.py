"""Weight importance: one function per scoring method, and the registry that names them.

Every scoring function has the signature::

    scorer(module, layers, data, *, loss, output_metric, generator) -> Importance

and returns one score tensor per layer (same shape as the weight, higher = more important)
and, for methods that compensate, the bias shift ``delta_b[i, j]`` that best absorbs the
removal of ``W[i, j]``. Adding a method is one function and one :func:`register_scorer` line.

The elimination-compensation statistics (DESIGN.md section 2), with ``s_i(x)`` the output
sensitivity of unit ``i`` and ``z_j`` the layer's input::

    B_i = E[s_i],  A_ij = E[s_i z_j],  C_ij = E[s_i z_j^2]
    I_ij = W_ij^2 (C_ij - A_ij^2 / B_i),    delta_b_ij = W_ij A_ij / B_i

are accumulated batch by batch, so memory does not depend on the number of samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ._chain import chain_sensitivities, linear_chain
from ._layers import (
    LayerRecorder,
    ScoringData,
    check_input_width,
    effective_weight,
    evaluation_mode,
    forward_recorded,
    linear_layers,
    module_device_dtype,
    output_sensitivities,
)
from ._nonlinear import input_means, nonlinear_output_change


@dataclass
class Importance:
    """Scores of one method, and its per-weight bias shifts if it compensates.

    Attributes
    ----------
    scores : list of torch.Tensor
        One tensor per layer, shaped like the layer's weight. Higher means more important.
    bias_shifts : list of torch.Tensor or None
        ``bias_shifts[l][i, j]`` is added to ``bias[i]`` of layer ``l`` when ``W[i, j]`` is
        removed. ``None`` for methods without compensation.
    """

    scores: list[torch.Tensor]
    bias_shifts: list[torch.Tensor] | None = None


SCORERS: dict[str, Callable[..., Importance]] = {}


def register_scorer(name: str):
    """Decorator that adds a scoring function to :data:`SCORERS` under ``name``."""

    def add(function):
        SCORERS[name] = function
        return function

    return add


class _ECStatistics:
    """Streaming sums of B, A and C for one layer.

    ``z`` is centred on a per-feature shift (the first batch's mean) before the products, so
    that ``C - A^2 / B`` does not cancel catastrophically when computed in float32; the batch
    products run in the module's precision and are summed in float64.
    """

    def __init__(self):
        self.n = 0
        self.shift = self.B = self.A = self.C = None

    def update(self, s: torch.Tensor, z: torch.Tensor) -> None:
        s, z = s.detach(), z.detach()
        if self.shift is None:
            self.shift = z.mean(0)
            self.B = torch.zeros(s.shape[1], dtype=torch.float64, device=s.device)
            self.A = torch.zeros(s.shape[1], z.shape[1], dtype=torch.float64, device=s.device)
            self.C = torch.zeros_like(self.A)
        centred = z - self.shift
        self.n += z.shape[0]
        self.B += s.sum(0, dtype=torch.float64)
        self.A += (s.T @ centred).double()
        self.C += (s.T @ centred.square()).double()

    def means(self):
        """``B``, ``A`` and ``C`` as expectations, ``A`` and ``C`` still about the shift."""
        return self.B / self.n, self.A / self.n, self.C / self.n

    def ec(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """EC scores ``W^2 (C - A^2/B)`` and shifts ``W A / B``; zero for dead units (B = 0)."""
        B, A, C = self.means()
        alive = (B > 0).unsqueeze(1)
        safe_B = torch.where(alive, B.unsqueeze(1), torch.ones_like(B).unsqueeze(1))
        weighted_mean = A / safe_B  # E_s[z - shift]
        # C - A^2/B is a variance (>= 0); rounding may push a constant input slightly below.
        variance = (C - A * weighted_mean).clamp_min(0)
        W = weight.double()
        scores = torch.where(alive, W.square() * variance, 0.0)
        shifts = torch.where(alive, W * (weighted_mean + self.shift.double()), 0.0)
        return scores, shifts

    def obd(self, weight: torch.Tensor) -> torch.Tensor:
        """Optimal Brain Damage (Gauss-Newton) score ``W^2 E[s z^2]``, no compensation."""
        B, A, C = self.means()
        c = self.shift.double()
        uncentred_C = C + 2 * c * A + c.square() * B.unsqueeze(1)
        return weight.double().square() * uncentred_C.clamp_min(0)


def ec_statistics(
    module: nn.Module, layers: list[nn.Linear], data: ScoringData, output_metric: str
) -> list[_ECStatistics]:
    """Accumulate the EC statistics of every layer over ``data``.

    Per batch: one forward pass that records each layer's input and pre-activation, the
    per-sample sensitivities (one batched product per layer for a plain chain, see
    :mod:`sk_ecprune._chain`; else one backward pass per output), two matrix products per
    layer.
    """
    stats = [_ECStatistics() for _ in layers]
    chain = linear_chain(module, layers)
    with LayerRecorder(layers) as recorder:
        for Xb, _ in data:
            sensitivities = None
            if chain is not None:  # one batched product per layer instead of K passes
                output = forward_recorded(module, recorder, Xb, keep_graph=False)
                sensitivities = chain_sensitivities(chain, recorder.outputs, output, output_metric)
            if sensitivities is None:
                output = forward_recorded(module, recorder, Xb)
                sensitivities = output_sensitivities(output, recorder.outputs, output_metric)
            for stat, z, s in zip(stats, recorder.inputs, sensitivities):
                stat.update(s, z)
            recorder.clear()
    return stats


@register_scorer("ec")
def ec_importance(module, layers, data, *, output_metric="euclidean", **_) -> Importance:
    """Elimination-compensation: least output change left after the best bias shift."""
    stats = ec_statistics(module, layers, data, output_metric)
    pairs = [s.ec(effective_weight(layer)) for s, layer in zip(stats, layers)]
    return Importance([p[0] for p in pairs], [p[1] for p in pairs])


@register_scorer("obd")
def obd_importance(module, layers, data, *, output_metric="euclidean", **_) -> Importance:
    """Optimal Brain Damage, Gauss-Newton form: EC's output change without compensation."""
    stats = ec_statistics(module, layers, data, output_metric)
    return Importance([s.obd(effective_weight(layer)) for s, layer in zip(stats, layers)])


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


@register_scorer("nonlinear")
def nonlinear_importance(module, layers, data, *, output_metric="euclidean", **_) -> Importance:
    """Brute force (paper eq. 3): the real output change of each removal, with bias shift.

    Removing ``W[i, j]`` shifts ``b[i]`` by ``W[i, j] E[z_j]``; the score is the measured
    ``E[|y - y_pruned|^2]``. Costs one forward pass of the network's tail per weight.
    """
    means = input_means(module, layers, data)
    weights = [effective_weight(layer) for layer in layers]
    scores = [
        nonlinear_output_change(module, layers, data, index, means[index], output_metric)
        for index in range(len(layers))
    ]
    shifts = [W.double() * mu.double() for W, mu in zip(weights, means)]
    return Importance(scores, shifts)


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


def check_method(method: str) -> Callable[..., Importance]:
    """The scoring function registered as ``method``, or an error that lists the known ones."""
    if method not in SCORERS:
        raise ValueError(f"Unknown method {method!r}; expected one of {sorted(SCORERS)}.")
    return SCORERS[method]


def compute_importance(
    module: nn.Module,
    X,
    y=None,
    *,
    method: str = "ec",
    loss=None,
    batch_size: int = 1024,
    output_metric: str = "euclidean",
    random_state=None,
    check_finite: bool = True,
) -> Importance:
    """Scores and bias shifts of ``method`` for every linear layer of ``module``.

    See :func:`score_weights` for the parameters. The module is scored in evaluation mode
    and left in the mode it was in. ``check_finite=False`` skips the batch-by-batch NaN and
    infinity check of ``X`` (for data an earlier call has checked).
    """
    scorer = check_method(method)
    if output_metric not in ("euclidean", "fisher"):
        raise ValueError(
            f"Unknown output_metric {output_metric!r}; expected 'euclidean' or 'fisher'."
        )
    layers = [layer for _, layer in linear_layers(module)]
    device, dtype = module_device_dtype(module)
    data = ScoringData.from_arrays(X, y, batch_size, device, dtype, check_finite)
    with evaluation_mode(module):
        check_input_width(module, data.X[:1].to(device, dtype))
        importance = scorer(
            module,
            layers,
            data,
            loss=loss,
            output_metric=output_metric,
            generator=make_generator(random_state),
        )
    for scores in importance.scores:
        if not torch.isfinite(scores).all():
            raise FloatingPointError(
                f"method {method!r} produced non-finite scores; check the module's outputs "
                "on X for NaN or overflow."
            )
    return importance


def score_weights(
    module: nn.Module,
    X,
    y=None,
    *,
    method: str = "ec",
    loss=None,
    batch_size: int = 1024,
    output_metric: str = "euclidean",
    random_state=None,
) -> list[torch.Tensor]:
    """Importance of every weight of every ``nn.Linear`` layer of ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        Any module whose ``nn.Linear`` layers are each applied once per sample.
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Data over which expectations are taken. Never modified.
    y : array-like or torch.Tensor, default=None
        Targets, only for methods that use the loss (``"gradient_magnitude"``).
    method : str, default="ec"
        A key of :data:`SCORERS`: ``"ec"``, ``"nonlinear"``, ``"obd"``, ``"magnitude"``,
        ``"gradient_magnitude"``, ``"random"``, or one registered with :func:`register_scorer`.
    loss : callable, default=None
        ``loss(output, y) -> scalar`` batch mean, for ``"gradient_magnitude"``.
    batch_size : int, default=1024
        Samples per scoring pass; bounds the memory used.
    output_metric : {"euclidean", "fisher"}, default="euclidean"
        How a change of the output is measured by ``"ec"``, ``"obd"`` and ``"nonlinear"``:
        squared Euclidean norm, or the softmax Fisher metric for classifier logits.
    random_state : int, torch.Generator or None, default=None
        Seed for ``"random"``.

    Returns
    -------
    scores : list of torch.Tensor
        One tensor per ``nn.Linear`` layer, in module order, shaped like its weight.
        Higher scores mark more important weights.
    """
    return compute_importance(
        module,
        X,
        y,
        method=method,
        loss=loss,
        batch_size=batch_size,
        output_metric=output_metric,
        random_state=random_state,
    ).scores
