"""Issue #19: every EC method survives rank-deficient statistics, and a constant input is free.

Rank deficiency arises from sample weights on one row, units active on one row, dead units,
few rows per input: each must give finite scores and updates, never a linear-algebra error.
"""

import numpy as np
import pytest
import torch
from torch import nn

from sk_ecprune.engine import prune_model, score_neurons, score_weights
from sk_ecprune.engine.scoring.ec_obs.statistics import (
    UnitStatistics,
    robust_cholesky,
    row_metric,
)

from .._reference import random_mlp

EC_METHODS = ("ec", "ec_obs", "ec_obs_exact")


def _relu_net(sizes, seed, dead=(), almost_dead=(), zero_fraction=0.5, dtype=torch.float32):
    """A ReLU chain with many zero weights, dead units (never active) and almost-dead units
    (active on few rows), by (layer, unit)."""
    net = random_mlp(sizes, nn.ReLU, seed, dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer in linears:
            layer.weight.mul_(torch.rand(layer.weight.shape, generator=generator) > zero_fraction)
        for index, unit in dead:
            linears[index].bias[unit] = -1e3
        for index, unit in almost_dead:
            linears[index].bias[unit] = -2.5 * float(linears[index].weight[unit].norm() + 1)
    return net


def _finite_module(net):
    return all(torch.isfinite(p).all() for p in net.parameters())


@pytest.mark.parametrize("seed", range(12))
def test_random_tiny_nets_prune_with_finite_results(seed):
    """Seeded property test: random widths, zeros, dead and almost-dead units, weights."""
    rng = np.random.RandomState(seed)
    sizes = [int(rng.randint(2, 7)) for _ in range(int(rng.randint(3, 5)))]
    sizes[-1] = int(rng.randint(1, 3))
    dead = [(0, int(rng.randint(sizes[1])))]
    almost = [(0, int(rng.randint(sizes[1])))]
    n = int(rng.randint(3, 30))
    X = torch.from_numpy(rng.randn(n, sizes[0]).astype(np.float32) * 10 ** rng.uniform(-3, 3))
    weight = torch.from_numpy(rng.rand(n) * (rng.rand(n) < 0.3))  # mostly zero
    weight[int(rng.randint(n))] = 1.0
    for method in EC_METHODS:
        net = _relu_net(sizes, seed, dead, almost, zero_fraction=rng.uniform(0.2, 0.9))
        scores = score_weights(net, X, method=method, sample_weight=weight)
        assert all(torch.isfinite(s).all() for s in scores.scores), method
        report = prune_model(net, X, ratio=0.9, method=method, sample_weight=weight)
        assert _finite_module(net), method
        assert all(np.isfinite(layer.added_damping) for layer in report.layers)
    if len(sizes) > 2:
        for method in ("ec", "ec_obs"):
            net = _relu_net(sizes, seed, dead, almost)
            prune_model(net, X, ratio=0.5, method=method, granularity="neuron",
                        sample_weight=weight)
            assert _finite_module(net), method


@pytest.mark.parametrize("method", EC_METHODS)
def test_weights_on_one_row_score_as_that_row_alone(method):
    X = torch.randn(40, 5, generator=torch.Generator().manual_seed(0)) + 100.0
    weight = torch.zeros(40)
    weight[7] = 2.5
    net = _relu_net([5, 6, 4, 2], seed=1, zero_fraction=0.2)
    weighted = score_weights(net, X, method=method, sample_weight=weight)
    alone = score_weights(net, X[7:8], method=method)
    for a, b in zip(weighted.scores, alone.scores):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    prune_model(net, X, ratio=0.8, method=method, sample_weight=weight)
    assert _finite_module(net)


def test_unit_active_on_one_row():
    X = torch.randn(50, 4, generator=torch.Generator().manual_seed(3))
    net = _relu_net([4, 5, 3, 1], seed=3, zero_fraction=0.0)
    first = net[0]
    with torch.no_grad():  # unit 0 fires on the row of largest x_0 only
        first.weight[0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
        first.bias[0] = -float(X[:, 0].sort().values[-2]) - 1e-3
    assert int((net[1](net[0](X))[:, 0] > 0).sum()) == 1
    for method in ("ec_obs", "ec_obs_exact"):
        clone = _relu_net([4, 5, 3, 1], seed=3, zero_fraction=0.0)
        clone.load_state_dict(net.state_dict())
        prune_model(clone, X, ratio=0.9, method=method)
        assert _finite_module(clone)


def test_ec_obs_exact_on_tiny_relu_regressors_never_fails():
    """The case of the issue: 9 of 48 such prunings failed in Cholesky before."""
    for seed in range(16):
        X = torch.randn(40, 5, generator=torch.Generator().manual_seed(seed))
        net = _relu_net([5, 8, 6, 1], seed, zero_fraction=0.0)
        prune_model(net, X, ratio=0.9, method="ec_obs_exact")
        assert _finite_module(net)


@pytest.mark.parametrize("method", EC_METHODS)
def test_constant_input_costs_nothing(method):
    """The bias absorbs a weight on an input constant over the scoring rows exactly."""
    X = torch.randn(80, 5, generator=torch.Generator().manual_seed(4))
    X[:, 2] = 3.0
    net = random_mlp([5, 6, 3], nn.Tanh, seed=4, dtype=torch.float32)
    scores = score_weights(net, X, method=method).scores[0]
    assert (scores[:, 2] == 0).all()
    assert (scores[:, [0, 1, 3, 4]] > 0).all()
    # so pruning removes them first, at no change of the output
    before = net(X)
    prune_model(net, X, ratio=6 / 48, method=method)  # 6 of 48 weights: exactly column 2
    assert (net[0].weight[:, 2] == 0).all()
    torch.testing.assert_close(net(X), before, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["ec", "ec_obs"])
def test_constant_unit_costs_nothing(method):
    X = torch.randn(60, 4, generator=torch.Generator().manual_seed(5))
    net = random_mlp([4, 5, 3, 2], nn.Tanh, seed=5, dtype=torch.float32)
    with torch.no_grad():
        net[0].weight[1] = 0.0  # unit 1 outputs tanh(b): a constant
    scores = score_neurons(net, X, method=method).scores[0]
    assert scores[1] == 0
    assert (scores[[0, 2, 3, 4]] > 0).all()


def test_statistics_match_a_direct_weighted_covariance():
    """Far from zero, weights on few rows, float32 inputs, several batches."""
    generator = torch.Generator().manual_seed(6)
    z = (torch.randn(90, 4, generator=generator) * 1e-2 + 1e4).float()
    s = torch.rand(90, 3, generator=generator)
    w = torch.zeros(90)
    w[[3, 50, 51]] = torch.tensor([1.0, 2.0, 0.5])
    stats = UnitStatistics("exact")
    for rows in (slice(0, 30), slice(30, 60), slice(60, 90)):
        stats.update(s[rows], z[rows], w[rows])
    sigma = stats.covariances()
    for unit in range(3):
        v = (s[:, unit] * w).double().numpy()
        expected = np.cov(z.double().numpy().T, aweights=v, bias=True)
        np.testing.assert_allclose(sigma[unit].numpy(), expected, rtol=1e-7, atol=1e-12)
        eigenvalues = torch.linalg.eigvalsh(sigma[unit])
        assert float(eigenvalues.min()) >= -1e-8 * float(eigenvalues.max())  # rounding only


def test_robust_cholesky_adds_damping_only_where_needed():
    good = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    singular = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    indefinite = torch.tensor([[1.0, 1.0 + 1e-9], [1.0 + 1e-9, 1.0]], dtype=torch.float64)
    K = torch.stack([good, singular, indefinite])
    L, added = robust_cholesky(K)
    assert added[0] == 0 and added[1] > 0 and added[2] > 0
    assert float(added.max()) < 1e-6
    eye = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(L @ L.mT, K + added.view(-1, 1, 1) * eye)


def test_added_damping_is_recorded():
    """Undamped statistics of two identical inputs: the Hessian is singular, the
    factorisation adds damping and the metric says how much; reports carry the field."""
    X = torch.randn(30, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    X[:, 1] = X[:, 0]
    stats = UnitStatistics("shared")
    stats.update(torch.ones(30, 2, dtype=torch.float64), X)
    metric = row_metric(stats, damp=0.0, abs_floor=0.0)
    assert 0 < metric.relative_added_damping() < 1e-6
    assert torch.isfinite(metric.inverse()).all()
    net = random_mlp([3, 4, 1], nn.Tanh, seed=7, dtype=torch.float64)
    report = prune_model(net, X, ratio=0.5, method="ec_obs")
    assert report.to_dict()["layers"][report.layers[0].name]["added_damping"] == 0.0


def test_weighted_subsample_draws_rows_of_positive_weight():
    X = torch.randn(200, 3, generator=torch.Generator().manual_seed(8))
    weight = torch.zeros(200)
    weight[[5, 150]] = 1.0
    net = random_mlp([3, 4, 1], nn.Tanh, seed=8, dtype=torch.float32)
    prune_model(net, X, ratio=0.5, method="ec_obs", sample_weight=weight, max_samples=20)
    assert _finite_module(net)
