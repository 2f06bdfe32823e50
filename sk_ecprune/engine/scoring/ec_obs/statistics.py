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

__all__ = ["HESSIANS", "RowMetric", "UnitStatistics", "robust_cholesky", "row_metric"]

HESSIANS = ("shared", "exact")
F64 = torch.float64
#: elements of the temporary of one weighted second-moment product
_PRODUCT_ELEMENTS = 2**24


class UnitStatistics:
    """Streaming weighted means and covariances of one layer's input, per weighting.

    EC's sums (:class:`_ECStatistics`: ``B`` and ``A``) plus, for the chosen form, the
    total weight ``Bk``, the weighted mean ``Ak`` and the centred scatter ``Mk = sum v_k
    (z - Ak_k)(z - Ak_k)^T`` of each weighting ``v_k`` (each unit's ``s_i`` for
    ``"exact"``, one combined weighting for ``"shared"``). Everything runs in float64;
    each batch's scatter is taken about the batch's mean (so nothing cancels however far
    the inputs are from zero) and merged into the running one with Chan's update (a
    rank-one positive term): ``Mk`` is positive semi-definite up to float64 rounding
    (1e-16 of its scale), whatever the weights (a single row, a dead unit); what rounding
    leaves, the constant-input test of :func:`row_metric` and :func:`robust_cholesky`
    absorb.
    """

    def __init__(self, hessian: str = "shared"):
        if hessian not in HESSIANS:
            raise ValueError(f"hessian must be one of {HESSIANS}; got {hessian!r}.")
        self.hessian = hessian
        self.ec = _ECStatistics(second_moments=False)  # B and A: C is EC's alone
        self.unit_scale = None  # shared form: 1 / E[s_i] on the first batch
        self.Bk = self.Ak = self.Mk = None

    def update(self, s: torch.Tensor, z: torch.Tensor, w: torch.Tensor | None = None) -> None:
        """Add a batch: sensitivities ``s`` (n, out), inputs ``z`` (n, in), row weights ``w``."""
        s, z = s.detach(), z.detach()
        raw, z = z, z.double()  # converted once for both
        self.ec.update(s, raw, w, z)
        if w is not None:
            s = s * w.unsqueeze(1)
        v = (s if self.hessian == "exact" else self._combined(s)).double().clamp_min(0)
        if self.Bk is None:
            m, d = v.shape[1], z.shape[1]
            self.Bk = torch.zeros(m, dtype=F64, device=z.device)
            self.Ak = torch.zeros(m, d, dtype=F64, device=z.device)
            self.Mk = torch.zeros(m, d, d, dtype=F64, device=z.device)
        batch_total = v.sum(0)
        seen = batch_total > 0
        batch_mean = (v.T @ z) / torch.where(seen, batch_total, 1.0).unsqueeze(1)
        self._add_scatter(v, z, batch_mean, raw)
        # Chan et al.'s merge of (total, mean, scatter): every term positive semi-definite
        total = self.Bk + batch_total
        safe_total = torch.where(total > 0, total, 1.0)
        delta = batch_mean - self.Ak
        pull = torch.where(seen, batch_total / safe_total, 0.0)
        cross = torch.where(seen, self.Bk * pull, 0.0)
        self.Mk += cross.view(-1, 1, 1) * delta.unsqueeze(2) * delta.unsqueeze(1)
        self.Ak += pull.unsqueeze(1) * delta
        self.Bk = total

    def _combined(self, s):
        if self.unit_scale is None:
            scale = s.double().mean(0)
            floor = 1e-3 * float(scale.mean()) if scale.numel() else 0.0
            self.unit_scale = torch.where(scale > 0, 1 / scale.clamp_min(max(floor, 1e-300)),
                                          0.0).to(s.dtype)
        return (s @ self.unit_scale).unsqueeze(1)

    def _add_scatter(self, v, z, mean, raw):
        """``Mk[k] += sum v_k (z - mean_k)(z - mean_k)^T``: products about the batch's plain
        mean ``c`` (one matrix product for all weightings, in bounded temporaries), then
        moved to each weighting's mean, ``- B_k (mean_k - c)(mean_k - c)^T``. ``raw``: the
        batch ``z`` before its conversion to float64."""
        m = v.shape[1]
        c = z.mean(0)
        # an input centres to exact zeros (and adds nothing) iff it is constant over the
        # batch and its mean is exactly that value: the product runs over the others (half
        # of the 28x28 digits' pixels are constant), found on the narrower raw batch
        constant = (raw == raw[:1]).all(0) & (c == z[:1]).all(0)
        varying = torch.nonzero(~constant).squeeze(1)
        whole = len(varying) == z.shape[1]
        centred = z - c if whole else z[:, varying] - c[varying]
        n, d = centred.shape
        budget = _PRODUCT_ELEMENTS // 2  # float64: the bytes of the float32 budget
        units = max(1, min(m, budget // max(1, n * d)))
        rows = max(1, min(n, budget // max(1, units * d)))
        for u0 in range(0, m if d else 0, units):
            u1 = min(m, u0 + units)
            scatter = None
            for r0 in range(0, n, rows):
                zr = centred[r0 : r0 + rows]
                weighted = (v[r0 : r0 + rows, u0:u1, None] * zr[:, None, :]).reshape(len(zr), -1)
                part = (zr.T @ weighted).reshape(d, u1 - u0, d).transpose(0, 1)
                scatter = part if scatter is None else scatter + part
            if whole:
                self.Mk[u0:u1] += scatter
            else:
                self.Mk[u0:u1, varying.view(-1, 1), varying.view(1, -1)] += scatter
        offset = mean - c
        total = v.sum(0)
        self.Mk -= total.view(-1, 1, 1) * offset.unsqueeze(2) * offset.unsqueeze(1)

    def covariances(self, free_bias: bool = True) -> torch.Tensor:
        """``Sigma_k`` (k, in, in): covariance (``free_bias``) or uncentred second moment,
        positive semi-definite by construction (zero for a weighting that saw no row)."""
        alive = self.Bk > 0
        safe = torch.where(alive, self.Bk, torch.ones_like(self.Bk))
        sigma = self.Mk / safe.view(-1, 1, 1)
        if not free_bias:  # about zero: the covariance plus the mean's outer product
            sigma = sigma + self.Ak.unsqueeze(2) * self.Ak.unsqueeze(1)
        sigma = 0.5 * (sigma + sigma.transpose(1, 2))
        return torch.where(alive.view(-1, 1, 1), sigma, 0.0)

    def second_moments(self) -> torch.Tensor:
        """``E_k[z_j^2]`` (k, in): the scale against which an input counts as constant."""
        safe = torch.where(self.Bk > 0, self.Bk, torch.ones_like(self.Bk)).unsqueeze(1)
        return torch.diagonal(self.Mk, dim1=1, dim2=2) / safe + self.Ak.square()


@dataclass
class RowMetric:
    """The reduced quadratic of every row of one layer (float64).

    Row ``i`` of the layer uses ``K[group[i]]`` (damped ``Sigma``): a weight change ``dw``
    costs ``beta[i] * dw^T K dw``, and the bias follows with ``db = -zmean[i] . dw``.
    ``beta = 0`` marks a unit that never moves the output: free to prune, never updated.
    ``free[group[i]]`` marks the inputs that are constant under the row's weighting: the
    bias absorbs them exactly, so removing their weights costs nothing; ``K`` keeps them
    decoupled with a tiny placeholder diagonal (so that it factors), which the costs
    ignore. ``added_damping[g]``: what the factorisation had to add to ``K[g]``'s diagonal
    beyond the requested damping (0 when none; see :func:`robust_cholesky`).
    """

    K: torch.Tensor
    group: torch.Tensor
    beta: torch.Tensor
    zmean: torch.Tensor
    free: torch.Tensor | None = None
    added_damping: torch.Tensor | None = None
    _inverse: torch.Tensor | None = None
    _factor: torch.Tensor | None = None

    @property
    def per_row(self) -> bool:
        """True when every row has its own ``K`` (the exact form)."""
        return self.K.shape[0] == self.group.shape[0] and self.K.shape[0] > 1

    def factor(self) -> torch.Tensor:
        """Lower Cholesky factor of every ``K`` (made to exist: :func:`robust_cholesky`)."""
        if self._factor is None:
            self._factor = self._factor_coupled()
            added = torch.zeros(self.K.shape[0], dtype=F64, device=self.K.device)
            if self._factor is None:
                self._factor, added = robust_cholesky(self.K)
            if bool((added > 0).any()):
                eye = torch.eye(self.K.shape[1], dtype=F64, device=self.K.device)
                self.K = self.K + added.view(-1, 1, 1) * eye
            previous = 0.0 if self.added_damping is None else self.added_damping
            self.added_damping = added + previous
        return self._factor

    def inverse(self) -> torch.Tensor:
        """``K^-1`` of every group (Cholesky), computed once."""
        if self._inverse is None:
            L = self.factor()
            coupled = self._coupled()
            if coupled is None:
                self._inverse = torch.cholesky_inverse(L)
            else:  # the constant inputs' entries: (1 / L_jj)^2, as the full inverse has them
                inverse = torch.diag_embed(torch.diagonal(L, dim1=1, dim2=2).reciprocal().square())
                block = torch.cholesky_inverse(L[:, coupled][:, :, coupled])
                inverse[:, coupled.view(-1, 1), coupled.view(1, -1)] = block
                self._inverse = inverse
        return self._inverse

    def _coupled(self):
        """Indices of the inputs that are not constant, when one ``K`` has constant ones
        (decoupled: its factor and inverse are worked out on the others), else None."""
        if self.free is None or self.K.shape[0] != 1 or not bool(self.free.any()):
            return None
        return torch.nonzero(~self.free[0]).squeeze(1)

    def _factor_coupled(self):
        """:meth:`factor` of one ``K`` with constant inputs: their entries ``sqrt(K_jj)``
        (what the full factorisation gives a decoupled input), the others' block factored
        alone; None where that block needs added damping (the full path then decides)."""
        coupled = self._coupled()
        if coupled is None:
            return None
        block, added = robust_cholesky(self.K[:, coupled][:, :, coupled])
        if bool((added > 0).any()):
            return None
        L = torch.diag_embed(torch.diagonal(self.K, dim1=1, dim2=2).sqrt())
        L[:, coupled.view(-1, 1), coupled.view(1, -1)] = block
        return L

    def relative_added_damping(self) -> float:
        """Largest ``added_damping`` relative to its ``K``'s mean diagonal (0: none)."""
        self.factor()
        if not bool((self.added_damping > 0).any()):
            return 0.0
        scale = torch.diagonal(self.K, dim1=1, dim2=2).abs().mean(1).clamp_min(1e-300)
        return float((self.added_damping / scale).max())

    def row_free(self) -> torch.Tensor:
        """(rows, in) mask of the entries whose removal costs nothing (constant inputs)."""
        if self.free is None:
            return torch.zeros(len(self.group), self.K.shape[1], dtype=torch.bool,
                               device=self.K.device)
        return self.free[self.group]

    def apply(self, x: torch.Tensor, K: torch.Tensor | None = None) -> torch.Tensor:
        """``K[group[i]] @ x[i]`` for every row, without per-row copies of a shared ``K``."""
        K = self.K if K is None else K
        if self.per_row:
            return torch.bmm(K, x.unsqueeze(2)).squeeze(2)
        return x @ K[0]  # symmetric

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """``K[group[i]]^-1 rhs[i]`` for every row."""
        return self.apply(rhs, self.inverse())

    def quadratic(self, delta: torch.Tensor) -> torch.Tensor:
        """``beta_i delta_i^T K delta_i`` per row, constant inputs costing nothing."""
        delta = torch.where(self.row_free(), 0.0, delta)
        return self.beta * (delta * self.apply(delta)).sum(1)


def robust_cholesky(K: torch.Tensor, max_tries: int = 40, upper: bool = False):
    """Lower (or ``upper``) Cholesky factors of a batch of symmetric matrices that should be positive
    definite; returns ``(L, added)``.

    A matrix whose factorisation fails (singular, or indefinite by rounding) gets
    ``added * I`` on its diagonal, ``added`` starting at ``1e-12`` times its mean
    absolute diagonal and growing tenfold until the factorisation succeeds; ``added`` is 0
    for the matrices that factored as given. Never raises for finite input.
    """
    L, info = torch.linalg.cholesky_ex(K, upper=upper)
    added = torch.zeros(K.shape[0], dtype=K.dtype, device=K.device)
    failed = info != 0
    if not bool(failed.any()):
        return L, added
    if not bool(torch.isfinite(K).all()):
        raise FloatingPointError("EC-OBS statistics are not finite; check the module's "
                                 "outputs and the data for NaN or overflow.")
    eye = torch.eye(K.shape[1], dtype=K.dtype, device=K.device)
    scale = torch.diagonal(K, dim1=1, dim2=2).abs().mean(1).clamp_min(1e-300)
    jitter = 1e-12 * scale
    for _ in range(max_tries):
        index = torch.nonzero(failed).squeeze(1)
        added[index] = jitter[index]
        L_try, info = torch.linalg.cholesky_ex(K[index] + jitter[index].view(-1, 1, 1) * eye,
                                               upper=upper)
        L[index] = L_try
        failed[index] = info != 0
        if not bool(failed.any()):
            return L, added
        jitter = torch.where(failed, jitter * 10, jitter)
    raise FloatingPointError("EC-OBS could not factor a layer's Hessian even with damping "
                             "up to 1e28 times its diagonal.")


def row_metric(stats: UnitStatistics, damp: float = 0.01, abs_floor: float = 1e-10,
               free_bias: bool = True) -> RowMetric:
    """The damped form of one layer: ``K = Sigma + lambda I`` per group.

    ``lambda = damp * mean(diag Sigma)`` (a proximal term: the problem solved is
    ``min E[s (delta a)^2] + lambda |delta w|^2`` over the inputs that vary), plus
    ``abs_floor`` times the largest ``E[z^2]`` of the layer. Inputs whose variance is at
    the rounding level of their magnitude are constant: the bias absorbs their weights
    exactly, so they are decoupled from the others and marked ``free`` (cost 0, never
    damped); ``Sigma`` is the centred covariance, so the damping never charges for what the
    bias absorbs. ``damp = abs_floor = 0`` gives the undamped form (for tests). The
    factorisation adds damping only if ``K`` still does not factor (``added_damping``).
    """
    B, A, _ = stats.ec.means()
    alive = B > 0
    safe_B = torch.where(alive, B, torch.ones_like(B)).unsqueeze(1)
    zmean = torch.where(alive.unsqueeze(1), A / safe_B + stats.ec.shift.double(), 0.0)
    if not free_bias:
        zmean = torch.zeros_like(zmean)
    sigma = stats.covariances(free_bias)
    magnitude = stats.second_moments().clamp_min(0)  # E[z^2] per input
    diag = torch.diagonal(sigma, dim1=1, dim2=2)
    free = diag <= 1e-9 * magnitude
    keep = (~free).to(F64)
    sigma = sigma * keep.unsqueeze(2) * keep.unsqueeze(1)
    diag = torch.diagonal(sigma, dim1=1, dim2=2).clamp_min(0)
    scale = max(float(magnitude.max()) if magnitude.numel() else 1.0, 1e-30)
    lam = damp * diag.mean(1) + (abs_floor * scale if abs_floor > 0 else 0.0)
    # free inputs: a placeholder far below any cost that counts, so that K factors
    ridge = torch.where(free, 1e-20 * scale, lam.unsqueeze(1))
    K = sigma + torch.diag_embed(ridge)
    n_units = B.shape[0]
    if stats.hessian == "exact":
        group = torch.arange(n_units, device=K.device)
    else:
        group = torch.zeros(n_units, dtype=torch.long, device=K.device)
    metric = RowMetric(K, group, B, zmean, free=free)
    metric.factor()
    return metric
