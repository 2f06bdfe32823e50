"""The EC-OBS column sweep against a plain per-row loop of its definition, and the
planning's shortcuts (stacked layers, sensitivities carried down to the lowest layer)
against the unshortened computations."""

import pytest
import torch
from torch import nn

from sk_ecprune.engine.scoring.ec_obs.sweep import (
    SweepPlan,
    decoupled_costs,
    sweep,
    sweep_counts,
    sweep_margins,
)
from sk_ecprune.engine.sensitivities import recorded_sensitivities

F64 = torch.float64


def _factors(count, d, seed):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(count, d, 2 * d, generator=g, dtype=F64)
    K = A @ A.transpose(1, 2) / d + 0.1 * torch.eye(d, dtype=F64)
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(K)), upper=True)


def _reference(U, fid, x0, beta, tau, forced):
    """Row by row, column by column: the sequential OBS cost of each entry, removal at cost
    <= tau (or forced), the error spread over the row's later columns."""
    n, d = x0.shape
    removed = torch.zeros(n, d, dtype=torch.bool)
    for i in range(n):
        x = x0[i].clone()
        u = U[fid[i]]
        for j in range(d):
            scaled = x[j] / u[j, j]
            if forced[i, j] or beta[i] * scaled**2 <= tau:
                removed[i, j] = True
                if beta[i] > 0:
                    x[j:] -= scaled * u[j, j:]
    return removed


@pytest.mark.parametrize("factors", ["shared", "per_row", "some"])
def test_sweep_removes_what_the_sequential_definition_removes(factors):
    n, d = 9, 40  # more than one block of columns
    count = {"shared": 1, "per_row": n, "some": 3}[factors]
    U = _factors(count, d, seed=1)
    fid = torch.arange(n) % count
    if factors == "some":  # rows not in repeating order: gathered per row
        fid = torch.tensor([2, 0, 1, 1, 0, 2, 2, 1, 0])
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(n, d, generator=g, dtype=F64)
    beta = torch.rand(n, generator=g, dtype=F64) + 0.1
    beta[4] = 0.0  # a dead unit: every entry free, nothing updated
    forced = torch.rand(n, d, generator=g) < 0.1
    for tau in (0.0, 0.05, 0.5):
        removed, _ = sweep(U, fid, x0, beta, tau, forced, block=16)
        expected = _reference(U, fid, x0, beta, tau, forced)
        assert int((removed != expected).sum()) <= 1  # a tie at rounding may flip one
        assert removed[forced].all() and removed[4].all() == (tau >= 0)


def test_capped_sweep_removes_exactly_the_cap():
    n, d = 6, 50
    U = _factors(1, d, seed=3)
    x0 = torch.randn(n, d, generator=torch.Generator().manual_seed(4), dtype=F64)
    forced = torch.zeros(n, d, dtype=torch.bool)
    forced[:, 45] = True
    for cap in (n, 100, 151):
        removed, _ = sweep(U, torch.zeros(n, dtype=torch.long), x0, torch.ones(n, dtype=F64),
                           1e9, forced, cap=cap, block=16)
        assert int(removed.sum()) == cap and removed[forced].all()


def test_grouped_counts_are_each_groups_own_counts():
    d, sizes = 20, [5, 3]
    U = _factors(sum(sizes), d, seed=5)
    g = torch.Generator().manual_seed(6)
    x0 = torch.randn(sum(sizes), d, generator=g, dtype=F64)
    beta = torch.rand(sum(sizes), generator=g, dtype=F64) + 0.1
    forced = torch.zeros(sum(sizes), d, dtype=torch.bool)
    perm = torch.argsort(torch.rand(sum(sizes), d, generator=g), dim=1)
    fid = torch.arange(sum(sizes))
    taus = [0.01, 0.1, 1.0]
    together = sweep_counts(SweepPlan(U, fid, perm), x0, beta, taus, forced, sizes=sizes)
    for k, (a, b) in enumerate([(0, 5), (5, 8)]):
        alone = sweep_counts(SweepPlan(U[a:b], fid[a:b] - a, perm[a:b]), x0[a:b], beta[a:b],
                             taus, forced[a:b])
        assert [row[k] for row in together] == alone


def test_sweep_margins_bound_the_thresholds_that_decide_alike():
    """Every row decides the same at any threshold inside its margins (checked at both
    ends), and differently once the threshold reaches the upper one."""
    n, d = 7, 40
    U = _factors(n, d, seed=7)
    g = torch.Generator().manual_seed(8)
    x0 = torch.randn(n, d, generator=g, dtype=F64)
    beta = torch.rand(n, generator=g, dtype=F64) + 0.1
    forced = torch.rand(n, d, generator=g) < 0.1
    fid = torch.arange(n)
    tau = torch.full((n,), 0.05, dtype=F64)
    removed, below, above = sweep_margins(U, fid, x0, beta, tau, forced, block=16)
    assert torch.equal(removed, sweep(U, fid, x0, beta, tau, forced, block=16)[0])
    assert (below <= tau).all() and (above > tau).all() and torch.isfinite(above).all()
    inside = torch.nextafter(above, torch.full_like(above, -torch.inf))
    for edge in (below.clamp_min(0.0), inside):
        assert torch.equal(sweep(U, fid, x0, beta, edge, forced, block=16)[0], removed)
    reached = sweep(U, fid, x0, beta, above, forced, block=16)[0]
    assert ((reached != removed).sum(1) > 0).all()


def test_spans_of_the_counts_hold_their_counts():
    n, d = 6, 30
    U = _factors(1, d, seed=9)
    g = torch.Generator().manual_seed(10)
    x0 = torch.randn(n, d, generator=g, dtype=F64)
    beta = torch.ones(n, dtype=F64)
    forced = torch.zeros(n, d, dtype=torch.bool)
    plan = SweepPlan(U, torch.zeros(n, dtype=torch.long), torch.arange(d).expand(n, d))
    counts, spans = sweep_counts(plan, x0, beta, [0.01, 0.1], forced, spans=True)
    for tau, count, (low, high, rest) in zip([0.01, 0.1], counts, spans):
        assert low <= tau < high and rest == count  # no decoupled lead here
        # within the span (away from its ends: another stacking may round differently)
        inside = [low + (high - low) * share for share in (0.01, 0.5, 0.99)]
        assert sweep_counts(plan, x0, beta, inside, forced) == [count] * 3


@pytest.mark.parametrize("cap", [None, 120])
def test_decoupled_columns_decided_at_once_as_one_by_one(cap):
    """Columns without coupling (constant inputs, first in the order) decided at once give
    the sweep's own decisions and weights, and the plan finds how many lead."""
    n, d, q = 8, 40, 13
    g = torch.Generator().manual_seed(11)
    A = torch.randn(d, 2 * d, generator=g, dtype=F64)
    K = A @ A.T / d + 0.1 * torch.eye(d, dtype=F64)
    K[:q] = 0
    K[:, :q] = 0
    K[range(q), range(q)] = torch.rand(q, generator=g, dtype=F64) + 0.5
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(K)), upper=True)
    assert int((torch.triu(U, 1)[:q] != 0).sum()) == 0
    x0 = torch.randn(n, d, generator=g, dtype=F64)
    beta = torch.rand(n, generator=g, dtype=F64) + 0.1
    forced = torch.rand(n, d, generator=g) < 0.1
    fid = torch.zeros(n, dtype=torch.long)
    for tau in (0.02, 0.3, 1e9):  # the cap binds at the last
        one_by_one = sweep(U[None], fid, x0, beta, tau, forced, cap=cap, block=16)
        at_once = sweep(U[None], fid, x0, beta, tau, forced, cap=cap, block=16, decoupled=q)
        assert torch.equal(at_once[0], one_by_one[0])
        torch.testing.assert_close(at_once[1], one_by_one[1], rtol=1e-12, atol=1e-12)
        if cap is None:
            expected = _reference(U[None], fid, x0, beta, tau, forced)
            assert int((at_once[0] != expected).sum()) <= 1
        else:
            assert int(at_once[0].sum()) <= cap and (tau < 1 or int(at_once[0].sum()) == cap)


def test_counts_from_a_span_and_the_decoupled_costs_are_the_sweeps_counts():
    """Within a span, the count at any threshold is the span's removals outside the
    decoupled lead plus the lead's costs at or below it (forced ones in)."""
    n, d, q = 8, 30, 10
    g = torch.Generator().manual_seed(12)
    A = torch.randn(d, 2 * d, generator=g, dtype=F64)
    K = A @ A.T / d + 0.1 * torch.eye(d, dtype=F64)
    K[:q] = 0
    K[:, :q] = 0
    K[range(q), range(q)] = 1e-6 * (torch.rand(q, generator=g, dtype=F64) + 0.5)  # cheap lead
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(K)), upper=True)
    x0 = torch.randn(n, d, generator=g, dtype=F64)
    beta = torch.rand(n, generator=g, dtype=F64) + 0.1
    beta[3] = 0.0  # a dead row: its lead costs nothing
    forced = torch.rand(n, d, generator=g) < 0.1
    plan = SweepPlan(U[None], torch.zeros(n, dtype=torch.long), torch.arange(d).expand(n, d), q)
    lead = decoupled_costs(plan, x0, beta)
    (count,), ((low, high, rest),) = sweep_counts(plan, x0, beta, [1e-9], forced, spans=True)
    assert rest + int(((lead <= 1e-9) | forced[:, :q]).sum()) == count
    taus = [t for t in sorted(set(lead.flatten().tolist())) if low <= t < high]
    assert len(taus) > 20  # the lead's costs inside the span: its counts change within it
    expected = sweep_counts(plan, x0, beta, taus, forced)
    assert [rest + int(((lead <= t) | forced[:, :q]).sum()) for t in taus] == expected


def test_the_plan_counts_the_leading_decoupled_columns():
    from sk_ecprune.engine.scoring.ec_obs.statistics import RowMetric
    from sk_ecprune.engine.scoring.ec_obs.sweep import sweep_plan

    d = 12
    K = torch.eye(d, dtype=F64) * 2
    K[5:, 5:] += 0.5  # inputs 5.. coupled, 0..4 alone
    free = (torch.arange(d) < 5).unsqueeze(0)  # constant inputs: decoupled in K
    metric = RowMetric(K[None], torch.zeros(3, dtype=torch.long), torch.ones(3, dtype=F64),
                       torch.zeros(3, d, dtype=F64), free=free)
    costs = torch.arange(d, dtype=F64).expand(3, d)  # the order: 0, 1, ..., d - 1
    assert sweep_plan(metric, costs, order="layer").decoupled == 5
    assert sweep_plan(metric, costs.flip(1), order="layer").decoupled == 0


def test_sensitivities_from_the_lowest_layer_equal_the_full_chain():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.ReLU(),
                           nn.Linear(4, 3))
    layers = [m for m in module if isinstance(m, nn.Linear)]
    data = [(torch.randn(30, 6), None, None)]
    (_, full, _), = recorded_sensitivities(module, layers, data, "fisher")
    (_, partial, _), = recorded_sensitivities(module, layers, data, "fisher", lowest=1)
    assert partial[0] is None
    for a, b in zip(full[1:], partial[1:]):
        torch.testing.assert_close(a, b)
