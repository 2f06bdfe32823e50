"""EC-OBS statistics: each unit's quadratic form of a change of its row, bias eliminated.

Layer ``a = W z + b``; unit ``i`` has output sensitivity ``s_i(x) >= 0``. A change ``dw`` of
row ``i`` with the best bias change ``db = -E_i[z] . dw`` (``E_i``: mean weighted by
``s_i``) changes the output by ``B_i dw^T Sigma_i dw``, with ``B_i = E[s_i]`` and
``Sigma_i`` the ``s_i``-weighted covariance of ``z``: the Schur complement of the bias entry
of ``H_i = E[s_i x x^T]``, ``x = [z; 1]``. ``B_i`` and ``E_i[z]`` are EC's statistics
(:class:`~sk_ecprune.engine.scoring.ec._ECStatistics`); only ``Sigma_i`` is new.

Two forms of ``Sigma`` (``hessian=``):

- ``"exact"``: one ``Sigma_i`` per unit, ``out * in^2`` numbers (the reference);
- ``"shared"``: one covariance for the layer, under the weighting ``sum_i s_i / E[s_i]``
  (every unit counts equally, whatever its scale). It is exact when ``s`` is the same for
  every unit up to a factor (the output layer of a squared-error regressor), and costs what
  one extra unit's ``Sigma`` costs.

A layer without a bias cannot compensate with it: its form is the uncentred second moment
``E_i[z z^T]``, and the bias does not move.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..ec import _ECStatistics

__all__ = ["HESSIANS", "RowMetric", "UnitStatistics", "row_metric"]

HESSIANS = ("shared", "exact")
F64 = torch.float64
#: elements of the temporary of one weighted second-moment product
_PRODUCT_ELEMENTS = 2**24


class UnitStatistics:
    """Streaming first and second moments of one layer's input, weighted by each unit's ``s``.

    EC's sums (``B``, ``A``, ``C`` about a shift) plus, for the chosen form, the weighted
    sums ``Bk = sum v_k``, ``Ak = sum v_k (z - c)`` and ``Mk = sum v_k (z - c)(z - c)^T``
    of the weightings ``v_k`` (each unit's ``s_i`` for ``"exact"``, one combined weighting
    for ``"shared"``). Products run in the module's dtype and are summed in float64, about
    the first batch's mean ``c`` (as :class:`_ECStatistics`, so that covariances do not
    cancel in float32).
    """

    def __init__(self, hessian: str = "shared"):
        if hessian not in HESSIANS:
            raise ValueError(f"hessian must be one of {HESSIANS}; got {hessian!r}.")
        self.hessian = hessian
        self.ec = _ECStatistics()
        self.unit_scale = None  # shared form: 1 / E[s_i] on the first batch
        self.Bk = self.Ak = self.Mk = None

    def update(self, s: torch.Tensor, z: torch.Tensor, w: torch.Tensor | None = None) -> None:
        """Add a batch: sensitivities ``s`` (n, out), inputs ``z`` (n, in), row weights ``w``."""
        s, z = s.detach(), z.detach()
        self.ec.update(s, z, w)
        if w is not None:
            s = s * w.unsqueeze(1)
        v = s if self.hessian == "exact" else self._combined(s)
        centred = z - self.ec.shift
        if self.Bk is None:
            m, d = v.shape[1], z.shape[1]
            self.Bk = torch.zeros(m, dtype=F64, device=z.device)
            self.Ak = torch.zeros(m, d, dtype=F64, device=z.device)
            self.Mk = torch.zeros(m, d, d, dtype=F64, device=z.device)
        self.Bk += v.sum(0, dtype=F64)
        self.Ak += (v.T @ centred).double()
        self._add_second_moments(v, centred)

    def _combined(self, s):
        if self.unit_scale is None:
            scale = s.double().mean(0)
            floor = 1e-3 * float(scale.mean()) if scale.numel() else 0.0
            self.unit_scale = torch.where(scale > 0, 1 / scale.clamp_min(max(floor, 1e-300)),
                                          0.0).to(s.dtype)
        return (s @ self.unit_scale).unsqueeze(1)

    def _add_second_moments(self, v, centred):
        """``Mk[k] += centred^T diag(v_k) centred`` as products of bounded temporaries."""
        n, d = centred.shape
        m = v.shape[1]
        units = max(1, min(m, _PRODUCT_ELEMENTS // max(1, n * d)))
        rows = max(1, min(n, _PRODUCT_ELEMENTS // max(1, units * d)))
        for u0 in range(0, m, units):
            u1 = min(m, u0 + units)
            for r0 in range(0, n, rows):
                zr = centred[r0 : r0 + rows]
                weighted = (v[r0 : r0 + rows, u0:u1, None] * zr[:, None, :]).reshape(len(zr), -1)
                product = (zr.T @ weighted).reshape(d, u1 - u0, d).transpose(0, 1)
                self.Mk[u0:u1] += product.double()

    def covariances(self, free_bias: bool = True) -> torch.Tensor:
        """``Sigma_k`` (k, in, in): covariance (``free_bias``) or uncentred second moment."""
        alive = self.Bk > 0
        safe = torch.where(alive, self.Bk, torch.ones_like(self.Bk))
        mean = self.Ak / safe.unsqueeze(1)  # about the shift
        second = self.Mk / safe.view(-1, 1, 1)
        if free_bias:
            sigma = second - mean.unsqueeze(2) * mean.unsqueeze(1)
        else:  # about zero: E[(z-c)(z-c)^T] + c E[z-c]^T + E[z-c] c^T + c c^T
            c = self.ec.shift.double()
            sigma = (second + mean.unsqueeze(2) * c + c.unsqueeze(1) * mean.unsqueeze(1)
                     + torch.outer(c, c))
        sigma = 0.5 * (sigma + sigma.transpose(1, 2))
        return torch.where(alive.view(-1, 1, 1), sigma, 0.0)


@dataclass
class RowMetric:
    """The reduced quadratic of every row of one layer (float64).

    Row ``i`` of the layer uses ``K[group[i]]`` (damped ``Sigma``): a weight change ``dw``
    costs ``beta[i] * dw^T K dw``, and the bias follows with ``db = -zmean[i] . dw``.
    ``beta = 0`` marks a unit that never moves the output: free to prune, never updated.
    """

    K: torch.Tensor
    group: torch.Tensor
    beta: torch.Tensor
    zmean: torch.Tensor
    _inverse: torch.Tensor | None = None

    @property
    def per_row(self) -> bool:
        """True when every row has its own ``K`` (the exact form)."""
        return self.K.shape[0] == self.group.shape[0] and self.K.shape[0] > 1

    def inverse(self) -> torch.Tensor:
        """``K^-1`` of every group (Cholesky), computed once."""
        if self._inverse is None:
            self._inverse = torch.cholesky_inverse(torch.linalg.cholesky(self.K))
        return self._inverse

    def apply(self, x: torch.Tensor, K: torch.Tensor | None = None) -> torch.Tensor:
        """``K[group[i]] @ x[i]`` for every row, without per-row copies of a shared ``K``."""
        K = self.K if K is None else K
        if self.per_row:
            return torch.bmm(K, x.unsqueeze(2)).squeeze(2)
        return x @ K[0]  # symmetric

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """``K[group[i]]^-1 rhs[i]`` for every row."""
        return self.apply(rhs, self.inverse())


def row_metric(stats: UnitStatistics, damp: float = 0.01, abs_floor: float = 1e-10,
               free_bias: bool = True) -> RowMetric:
    """The damped form of one layer: ``K = Sigma + lambda I`` per group.

    ``lambda = damp * mean(diag Sigma)`` (a proximal term: the problem solved is
    ``min E[s (delta a)^2] + lambda |delta w|^2``), plus ``abs_floor`` times the largest
    ``E[z^2]`` of the layer, which keeps ``K`` positive definite when an input is constant
    or a unit is dead. Inputs whose variance is at the rounding level of their magnitude
    are constant: they are decoupled from the others, so that rounding cannot correlate
    them. ``damp = abs_floor = 0`` gives the undamped form (for tests).
    """
    B, A, C = stats.ec.means()
    alive = B > 0
    safe_B = torch.where(alive, B, torch.ones_like(B)).unsqueeze(1)
    zmean = torch.where(alive.unsqueeze(1), A / safe_B + stats.ec.shift.double(), 0.0)
    if not free_bias:
        zmean = torch.zeros_like(zmean)
    sigma = stats.covariances(free_bias)
    c = stats.ec.shift.double()
    safe = torch.where(stats.Bk > 0, stats.Bk, torch.ones_like(stats.Bk)).unsqueeze(1)
    first = stats.Ak / safe
    magnitude = (torch.diagonal(stats.Mk, dim1=1, dim2=2) / safe + 2 * c * first
                 + c.square()).clamp_min(0)  # E[z^2] per input
    if abs_floor > 0:
        keep = (torch.diagonal(sigma, dim1=1, dim2=2) > 1e-9 * magnitude).to(F64)
        sigma = sigma * keep.unsqueeze(2) * keep.unsqueeze(1)
    diag = torch.diagonal(sigma, dim1=1, dim2=2).clamp_min(0)
    floor = abs_floor * max(float(magnitude.max()) if magnitude.numel() else 1.0, 1e-30)
    lam = damp * diag.mean(1) + (floor if abs_floor > 0 else 0.0)
    K = sigma + lam.view(-1, 1, 1) * torch.eye(sigma.shape[1], dtype=F64, device=sigma.device)
    n_units = B.shape[0]
    if stats.hessian == "exact":
        group = torch.arange(n_units, device=K.device)
    else:
        group = torch.zeros(n_units, dtype=torch.long, device=K.device)
    return RowMetric(K, group, B, zmean)
