"""What a pruning did: per-layer counts and bias shifts, and the time it took."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["LayerReport", "PruningReport", "chain_reports"]


@dataclass
class LayerReport:
    """What pruning did to one ``nn.Linear`` layer.

    Attributes
    ----------
    name : str
        The layer's name in ``module.named_modules()``.
    n_weights : int
        Weights of the layer (biases never count).
    n_removed : int
        Weights absent after pruning, including those removed before this call.
    n_removed_now : int
        Weights removed by this call.
    bias_shift : numpy.ndarray or None
        Total shift added to the layer's bias by this call (float64 numpy, whatever the
        module's device, so that a report outlives its GPU and persists with plain types),
        or ``None`` if not compensated.
    weight_change : float
        Norm of the change of the layer's kept weights (summed over steps): nonzero only
        for methods that move the kept weights to compensate (``"ec_obs"``).
    added_damping : float
        EC-OBS: the largest ridge its Cholesky factorisation had to add to one of the
        layer's Hessians beyond the method's own damping, relative to that Hessian's mean
        diagonal (rank-deficient or rounding-indefinite statistics); 0 when none was
        needed, and for every other method.
    """

    name: str
    n_weights: int
    n_removed: int
    n_removed_now: int
    bias_shift: np.ndarray | None = None
    weight_change: float = 0.0
    added_damping: float = 0.0

    @property
    def sparsity(self) -> float:
        return self.n_removed / self.n_weights


@dataclass
class PruningReport:
    """Result of :func:`prune_model`: what was removed, where, and how long it took."""

    method: str
    ratio: float
    scope: str
    compensated: bool
    steps: int
    layers: list[LayerReport] = field(default_factory=list)
    time_s: float = 0.0
    granularity: str = "weight"

    @property
    def n_weights(self) -> int:
        return sum(layer.n_weights for layer in self.layers)

    @property
    def n_removed(self) -> int:
        return sum(layer.n_removed for layer in self.layers)

    @property
    def n_removed_now(self) -> int:
        return sum(layer.n_removed_now for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Achieved fraction of removed weights over all layers."""
        return self.n_removed / self.n_weights

    def to_dict(self) -> dict:
        """Plain-Python summary (no tensors), e.g. for logging or a DataFrame."""
        return {
            "method": self.method,
            "ratio": self.ratio,
            "scope": self.scope,
            "compensated": self.compensated,
            "steps": self.steps,
            "granularity": self.granularity,
            "n_weights": self.n_weights,
            "n_removed": self.n_removed,
            "sparsity": self.sparsity,
            "time_s": self.time_s,
            "layers": {
                layer.name: {
                    "n_weights": layer.n_weights,
                    "n_removed": layer.n_removed,
                    "sparsity": layer.sparsity,
                    "bias_shift_norm": None
                    if layer.bias_shift is None
                    else float(np.linalg.norm(layer.bias_shift)),
                    "weight_change": layer.weight_change,
                    "added_damping": layer.added_damping,
                }
                for layer in self.layers
            },
        }

    def __str__(self) -> str:
        lines = [
            f"{self.method} pruning to {self.ratio:.3g} ({self.scope}, {self.granularity}s, "
            f"{self.steps} step(s), "
            f"compensation {'on' if self.compensated else 'off'}): removed {self.n_removed} of "
            f"{self.n_weights} weights ({self.sparsity:.1%}) in {self.time_s:.2f} s"
        ]
        for layer in self.layers:
            lines.append(
                f"  {layer.name or '<module>'}: {layer.n_removed}/{layer.n_weights} "
                f"({layer.sparsity:.1%})"
            )
        return "\n".join(lines)


def chain_reports(reports: list[PruningReport]) -> PruningReport:
    """One report for consecutive :func:`prune_model` calls on one module (gradual pruning).

    Ratio, removed counts and sparsity are the last call's; weights removed and bias shifts
    added are summed over the calls; ``steps`` counts the scoring passes of all of them.
    """
    if not reports:
        raise ValueError("chain_reports needs at least one report.")
    last = reports[-1]
    chained = PruningReport(
        last.method,
        last.ratio,
        last.scope,
        last.compensated,
        sum(report.steps for report in reports),
        time_s=sum(report.time_s for report in reports),
        granularity=last.granularity,
    )
    for per_call in zip(*(report.layers for report in reports)):
        shifts = [layer.bias_shift for layer in per_call if layer.bias_shift is not None]
        chained.layers.append(
            LayerReport(
                per_call[-1].name,
                per_call[-1].n_weights,
                per_call[-1].n_removed,
                sum(layer.n_removed_now for layer in per_call),
                np.sum(shifts, axis=0) if shifts else None,
                sum(layer.weight_change for layer in per_call),
                max(layer.added_damping for layer in per_call),
            )
        )
    return chained
