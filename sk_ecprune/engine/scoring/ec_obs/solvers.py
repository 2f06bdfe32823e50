"""EC-OBS closed forms on one layer's :class:`~.statistics.RowMetric` (all float64).

- single removal of ``w_ij``: cost ``beta_i w_ij^2 / [K^-1]_jj`` (the score), or with only
  the bias moving (EC) ``beta_i w_ij^2 K_jj``;
- joint removal of a set ``S`` of row ``i`` (kept set ``R``): ``x_R = K_RR^-1 (K x0)_R``,
  the least-squares optimum of the kept weights;
- OBC's greedy removal sequence of every row (:func:`greedy_sequences`), whose cumulative
  cost is the exact joint cost of each prefix.
"""

from __future__ import annotations

import torch

from .statistics import RowMetric, robust_cholesky

__all__ = ["greedy_sequences", "joint_update", "single_costs"]

F64 = torch.float64


def single_costs(metric: RowMetric, W: torch.Tensor, bias_only: bool = False):
    """Single-removal costs of every weight of the layer; returns ``(costs, bias_shifts)``.

    With ``bias_only`` the cost and bias shift when only the bias moves (EC's
    ``W^2 (C - A^2/B)`` and ``W A / B`` when undamped); else the bias shifts are None (the
    kept weights move too: :func:`joint_update`).
    """
    W = W.double()
    beta = metric.beta.unsqueeze(1)
    free = metric.row_free()  # constant inputs: the bias absorbs them exactly
    if bias_only:
        diag = torch.diagonal(metric.K, dim1=1, dim2=2)[metric.group]
        return torch.where(free, 0.0, beta * W.square() * diag), W * metric.zmean
    inverse_diag = torch.diagonal(metric.inverse(), dim1=1, dim2=2)[metric.group]
    return torch.where(free, 0.0, beta * W.square() / inverse_diag), None


def joint_update(metric: RowMetric, x0: torch.Tensor, removed: torch.Tensor,
                 max_elements: int = 2**23):
    """Optimal kept weights of every row for its mask; returns ``(x, cost per row)``.

    Per row the smaller side is solved: with ``k = |S| <= d/2`` the removal form
    ``x = x0 - P[:, S] P_SS^-1 x0_S`` (``P = K^-1``), else the kept-set solve. Constant
    inputs (``metric.row_free()``) are decoupled in ``K`` and ``P``: removing their weights
    moves nothing else, so they take no part in either side. Rows go in batches of equal
    padded size (identity blocks pad the smaller ones), at most ``max_elements`` per
    temporary. Rows with ``beta = 0`` only lose their removed weights.
    """
    n, d = x0.shape
    x0 = x0.double()
    x = x0.clone()
    removed = removed.to(x0.device)
    free = metric.row_free()
    coupled = removed & ~free
    kept = ~removed & ~free
    k = coupled.sum(1)
    removal_side = (k > 0) & (2 * k <= d - free.sum(1))
    for side, use, selected in (("S", removal_side, coupled),
                                ("R", (k > 0) & ~removal_side, kept)):
        rows = torch.nonzero(use).squeeze(1)
        if len(rows) == 0:
            continue
        sizes = selected[rows].sum(1)
        order = torch.argsort(sizes)
        for batch in _batches_of_similar_size(rows[order], sizes[order], d, side, max_elements):
            x[batch] = _solve_rows(metric, x0, selected, batch, side)
    x[removed] = 0
    dead = metric.beta <= 0
    x[dead] = torch.where(removed[dead], 0.0, x0[dead])
    return x, metric.quadratic(x - x0)


def _batches_of_similar_size(rows, sizes, d, side, max_elements):
    start = 0
    while start < len(rows):
        stop = start + 1
        while stop < len(rows):
            m = int(sizes[stop])
            if (stop + 1 - start) * m * (d if side == "S" else m) > max_elements:
                break
            stop += 1
        yield rows[start:stop]
        start = stop


def _solve_rows(metric, x0, selected, rows, side):
    """One batch of :func:`joint_update`: each row's ``selected`` entries (its coupled
    removals for side ``"S"``, its coupled kept entries for ``"R"``), at most ``m``."""
    d = x0.shape[1]
    device = x0.device
    selected = selected[rows]
    m = int(selected.sum(1).max())
    if m == 0:
        return x0[rows]
    # the selected indices first (ascending), then unselected ones as padding
    idx = torch.argsort((~selected).to(torch.int8), dim=1, stable=True)[:, :m]
    valid = torch.arange(m, device=device).unsqueeze(0) < selected.sum(1, keepdim=True)
    g = metric.group[rows].view(-1, 1, 1)
    source = metric.inverse() if side == "S" else metric.K
    if metric.per_row:
        sub = source[g, idx.unsqueeze(2), idx.unsqueeze(1)]
    else:  # one matrix for every row: two indices gather faster than three
        sub = source[0][idx.unsqueeze(2), idx.unsqueeze(1)]
    pad = ~(valid.unsqueeze(2) & valid.unsqueeze(1))
    sub = torch.where(pad, torch.eye(m, dtype=F64, device=device).expand_as(sub), sub)
    chol, _ = robust_cholesky(sub)  # principal blocks of a factored K (or K^-1)
    if side == "S":
        rhs = torch.where(valid, torch.gather(x0[rows], 1, idx), 0.0)
        y = torch.where(valid, torch.cholesky_solve(rhs.unsqueeze(2), chol).squeeze(2), 0.0)
        if not metric.per_row:  # P[:, S] y as the product of P with y scattered to S
            spread = torch.zeros(len(rows), d, dtype=F64, device=device).scatter_(1, idx, y)
            return x0[rows] - metric.apply(spread, source)
        columns = source[g, torch.arange(d, device=device).view(1, -1, 1), idx.unsqueeze(1)]
        return x0[rows] - torch.bmm(columns, y.unsqueeze(2)).squeeze(2)
    Kx = metric.apply(x0[rows], metric.K[rows] if metric.per_row else metric.K)
    rhs = torch.where(valid, torch.gather(Kx, 1, idx), 0.0)
    y = torch.cholesky_solve(rhs.unsqueeze(2), chol).squeeze(2)
    new = x0[rows].clone()  # entries outside the kept set: removed (zeroed later) or free
    return new.scatter_(1, idx, torch.where(valid, y, torch.gather(new, 1, idx)))


def greedy_sequences(metric: RowMetric, x0: torch.Tensor, forced: torch.Tensor,
                     row_chunk: int | None = None):
    """OBC's greedy removal sequence of every row: ``(order, increments)``, both (n, d).

    Step ``t`` of row ``i`` removes the entry whose single-removal cost, on the row as the
    previous steps left it, is least, and updates the row and its ``K^-1`` (a rank-one
    downdate). ``increments.cumsum(1)`` is the joint cost of each prefix. Entries in
    ``forced`` (already removed) go first, at no cost. Cost ``n d^3``: rows are processed
    ``row_chunk`` at a time to bound the copies of ``K^-1``.
    """
    n, d = x0.shape
    row_chunk = row_chunk or max(1, 2**24 // (d * d))
    order = torch.empty(n, d, dtype=torch.long, device=x0.device)
    increments = torch.empty(n, d, dtype=F64, device=x0.device)
    for r0 in range(0, n, row_chunk):
        rows = torch.arange(r0, min(n, r0 + row_chunk), device=x0.device)
        order[rows], increments[rows] = _greedy_rows(
            metric.inverse()[metric.group[rows]].clone(), x0[rows].double().clone(),
            metric.beta[rows], forced[rows], metric.row_free()[rows])
    return order, increments


def _greedy_rows(P, x, beta, forced, free):
    r, d = x.shape
    ar = torch.arange(r, device=x.device)
    live = (beta > 0).to(F64)
    done = torch.zeros(r, d, dtype=torch.bool, device=x.device)
    order = torch.empty(r, d, dtype=torch.long, device=x.device)
    increments = torch.empty(r, d, dtype=F64, device=x.device)
    for t in range(d):
        diag = torch.diagonal(P, dim1=1, dim2=2).clamp_min(1e-300)
        cost = torch.where(free, 0.0, beta.unsqueeze(1) * x.square() / diag)
        cost = torch.where(forced & ~done, -1.0, cost)
        cost = torch.where(done, torch.inf, cost)
        j = cost.argmin(1)
        order[:, t] = j
        increments[:, t] = torch.where(forced[ar, j], 0.0, cost[ar, j].clamp_min(0))
        pj, pjj = P[ar, :, j], diag[ar, j]
        x = x - (live * x[ar, j] / pjj).unsqueeze(1) * pj
        P = P - pj.unsqueeze(2) * pj.unsqueeze(1) / pjj.view(-1, 1, 1)
        x[ar, j] = 0
        done[ar, j] = True
        P[ar, j, :] = 0
        P[ar, :, j] = 0
        P[ar, j, j] = 1.0  # a removed coordinate stays decoupled, never chosen again
    return order, increments
