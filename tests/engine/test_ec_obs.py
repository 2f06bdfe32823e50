"""EC-OBS (issue #13): closed forms against independent computations, and the procedure.

The references (``tests/_reference.py``) build each unit's augmented Hessian
``H_i = E[J_i^T M J_i]`` of its row ``(w_i, b_i)`` from per-sample autograd Jacobians, and
solve every removal directly: nothing there uses the engine's hooks, sensitivities,
statistics or Schur complement.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from sk_ecprune.engine import SCORERS, prune_model, score_weights
from sk_ecprune.engine.recording import scoring_session
from sk_ecprune.engine.scoring.ec_obs import register_ec_obs
from sk_ecprune.engine.scoring.ec_obs.solvers import greedy_sequences, joint_update, single_costs
from sk_ecprune.engine.scoring.ec_obs.statistics import UnitStatistics, row_metric
from sk_ecprune.engine.sensitivities import recorded_sensitivities

from .._reference import (
    ResidualMLP,
    obs_set_removal,
    random_mlp,
    reference_unit_hessians,
    trained_sine_mlp,
)


def _data(n=150, d=5, seed=0, dtype=torch.float64):
    return torch.randn(n, d, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def _metrics(module, X, hessian="exact", metric="euclidean"):
    """Undamped metrics of every layer, streamed in batches smaller than X."""
    with scoring_session(module, X, None, 64, True, None) as (layers, data):
        stats = [UnitStatistics(hessian) for _ in layers]
        for inputs, sensitivities, w in recorded_sensitivities(module, layers, data, metric):
            for stat, z, s in zip(stats, inputs, sensitivities):
                stat.update(s, z, w)
    return [row_metric(stat, damp=0.0, abs_floor=0.0) for stat in stats], layers


@pytest.fixture
def undamped():
    """EC-OBS variants without damping (their optimum is the plain least-squares one)."""
    names = []
    for selection in ("sweep", "greedy", "oneshot"):
        name = f"_test_ec_obs_{selection}"
        register_ec_obs(name, selection=selection, damp=0.0)
        names.append(name)
    yield names
    for name in names:
        SCORERS.pop(name)


@pytest.mark.parametrize("metric", ["euclidean", "fisher"])
def test_bias_only_limit_is_ec(metric):
    net = random_mlp([5, 6, 4, 3], nn.Tanh, seed=1)
    X = _data()
    metrics, layers = _metrics(net, X, metric=metric)
    ec = score_weights(net, X, method="ec", output_metric=metric, batch_size=64)
    for metric_, layer, scores, shifts in zip(metrics, layers, ec.scores, ec.bias_shifts):
        costs, obs_shifts = single_costs(metric_, layer.weight, bias_only=True)
        torch.testing.assert_close(costs, scores.double(), rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(obs_shifts, shifts.double(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("metric", ["euclidean", "fisher"])
def test_single_costs_are_obs_costs_of_the_augmented_hessian(metric):
    net = random_mlp([4, 5, 3, 2], nn.Tanh, seed=2)
    X = _data(d=4)
    metrics, layers = _metrics(net, X, metric=metric)
    for metric_, layer, H in zip(metrics, layers, reference_unit_hessians(net, X, metric)):
        W = layer.weight.detach()
        inverse = torch.linalg.inv(H)  # (units, in + 1, in + 1), the bias free to move
        expected = W.square() / torch.diagonal(inverse, dim1=1, dim2=2)[:, :-1]
        torch.testing.assert_close(single_costs(metric_, W)[0], expected, rtol=1e-8, atol=1e-14)
        # moving the kept weights never costs more than moving the bias alone
        assert (single_costs(metric_, W)[0] <= single_costs(metric_, W, True)[0] + 1e-14).all()


def test_shared_form_is_exact_when_sensitivities_are_equal():
    net = random_mlp([4, 5, 3], nn.Tanh, seed=3)  # output layer: s = 1 for every unit
    X = _data(d=4)
    exact, _ = _metrics(net, X, "exact")
    shared, _ = _metrics(net, X, "shared")
    torch.testing.assert_close(shared[-1].K[0].expand_as(exact[-1].K), exact[-1].K,
                               rtol=1e-10, atol=1e-13)


def test_joint_update_is_the_direct_solve_of_every_set():
    net = random_mlp([6, 5, 2], nn.Tanh, seed=4)
    X = _data(d=6)
    metrics, layers = _metrics(net, X)
    H = reference_unit_hessians(net, X)[0]
    W, b = layers[0].weight.detach(), layers[0].bias.detach()
    generator = torch.Generator().manual_seed(0)
    for k in (1, 2, 3, 4, 5):  # both sides of the solver: |S| <= d/2 and kept-set solves
        removed = torch.zeros_like(W, dtype=torch.bool)
        for i in range(W.shape[0]):
            removed[i, torch.randperm(6, generator=generator)[:k]] = True
        x, cost = joint_update(metrics[0], W, removed)
        bias = b - (metrics[0].zmean * (x - W)).sum(1)
        for i in range(W.shape[0]):
            ref_cost, ref_row = obs_set_removal(H[i], torch.cat([W[i], b[i : i + 1]]),
                                                torch.nonzero(removed[i]).squeeze(1).tolist())
            torch.testing.assert_close(torch.cat([x[i], bias[i : i + 1]]), ref_row,
                                       rtol=1e-8, atol=1e-10)
            torch.testing.assert_close(cost[i], ref_cost, rtol=1e-8, atol=1e-13)


def test_joint_update_with_a_constant_input_is_the_solve_without_it():
    """A constant input's weight is absorbed by the bias exactly: the joint update equals
    the direct solve on the other inputs, with that weight moved into the bias."""
    net = random_mlp([6, 5, 2], nn.Tanh, seed=5)
    X = _data(d=6, seed=1)
    X[:, 2] = 0.7
    metrics, layers = _metrics(net, X)
    shared, _ = _metrics(net, X, "shared")
    H = reference_unit_hessians(net, X)[0]
    other = [0, 1, 3, 4, 5, 6]  # the augmented row without input 2 (6: the bias)
    W, b = layers[0].weight.detach(), layers[0].bias.detach()
    generator = torch.Generator().manual_seed(1)
    for k in (1, 2, 4, 5):  # with and without input 2, both sides of the solver
        removed = torch.zeros_like(W, dtype=torch.bool)
        for i in range(W.shape[0]):
            removed[i, torch.randperm(6, generator=generator)[:k]] = True
        x, cost = joint_update(metrics[0], W, removed)
        bias = b - (metrics[0].zmean * (x - W)).sum(1)
        for i in range(W.shape[0]):
            row = torch.cat([W[i], b[i : i + 1] + W[i, 2] * 0.7])[other]
            gone = [other.index(j) for j in torch.nonzero(removed[i]).squeeze(1).tolist()
                    if j != 2]
            ref_cost, ref_row = (obs_set_removal(H[i][other][:, other], row, gone) if gone
                                 else (torch.zeros((), dtype=torch.float64), row))
            expected_weight = W[i, 2] * (~removed[i, 2])
            torch.testing.assert_close(x[i, 2], expected_weight, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(x[i, [0, 1, 3, 4, 5]], ref_row[:-1], rtol=1e-8, atol=1e-10)
            torch.testing.assert_close(bias[i] + x[i, 2] * 0.7, ref_row[-1], rtol=1e-8,
                                       atol=1e-10)
            torch.testing.assert_close(cost[i], ref_cost, rtol=1e-8, atol=1e-13)
        # one K for every row: the direct solve of its block without input 2
        K = shared[0].K[0][[0, 1, 3, 4, 5]][:, [0, 1, 3, 4, 5]]
        x, _ = joint_update(shared[0], W, removed)
        for i in range(W.shape[0]):
            gone = removed[i, [0, 1, 3, 4, 5]]
            w = W[i, [0, 1, 3, 4, 5]].double()
            expected = torch.zeros(5, dtype=torch.float64)
            expected[~gone] = w[~gone] + torch.linalg.solve(K[~gone][:, ~gone],
                                                            K[~gone][:, gone] @ w[gone])
            torch.testing.assert_close(x[i, [0, 1, 3, 4, 5]], expected, rtol=1e-8, atol=1e-10)
            assert x[i, 2] == W[i, 2] * (~removed[i, 2])


@pytest.mark.parametrize("hessian", ["shared", "exact"])
def test_statistics_with_inputs_constant_in_some_batches(hessian):
    """The product skips the inputs constant over a batch: the covariance is still the
    direct weighted one (input 1 constant in the first batch only, input 3 always 0)."""
    generator = torch.Generator().manual_seed(7)
    z = torch.randn(60, 5, generator=generator, dtype=torch.float64)
    z[:30, 1] = 2.5
    z[:, 3] = 0.0
    s = torch.rand(60, 3, generator=generator, dtype=torch.float64)
    stats = UnitStatistics(hessian)
    for rows in (slice(0, 30), slice(30, 60)):
        stats.update(s[rows], z[rows])
    sigma = stats.covariances()
    weights = s.T if hessian == "exact" else (s / s[:30].mean(0)).sum(1, keepdim=True).T
    for unit, v in enumerate(weights):
        expected = np.cov(z.numpy().T, aweights=v.numpy(), bias=True)
        np.testing.assert_allclose(sigma[unit].numpy(), expected, rtol=1e-10, atol=1e-14)


def test_factor_and_inverse_with_constant_inputs_equal_the_full_ones():
    """One K with constant inputs is factored and inverted on the other inputs' block; the
    result equals the factorisation of the whole K (and a block that would need damping
    takes the full path)."""
    net = random_mlp([6, 5, 2], nn.Tanh, seed=6)
    X = _data(d=6, seed=2)
    X[:, [1, 4]] = torch.tensor([0.3, -2.0], dtype=torch.float64)
    metric = _metrics(net, X, "shared")[0][0]
    assert metric.free[0].tolist() == [False, True, False, False, True, False]
    L = torch.linalg.cholesky(metric.K)
    torch.testing.assert_close(metric.factor(), L, rtol=1e-12, atol=0.0)
    torch.testing.assert_close(metric.inverse(), torch.cholesky_inverse(L), rtol=1e-10,
                               atol=0.0)
    singular = copy.deepcopy(metric)
    singular._factor = singular._inverse = None
    singular.K = singular.K.clone()
    singular.K[0, 0, :] = singular.K[0, 2, :]
    singular.K[0, :, 0] = singular.K[0, :, 2]  # inputs 0 and 2 alike: needs damping
    singular.factor()
    assert float(singular.added_damping[0]) > 0
    L = torch.linalg.cholesky(singular.K)  # the damped K, as the full path leaves it
    torch.testing.assert_close(singular.factor(), L, rtol=1e-8, atol=0.0)


def test_greedy_prefix_cost_is_the_optimum_for_that_set():
    net = random_mlp([5, 4, 2], nn.Tanh, seed=5)
    X = _data()
    metrics, layers = _metrics(net, X)
    H = reference_unit_hessians(net, X)[0]
    W, b = layers[0].weight.detach(), layers[0].bias.detach()
    order, increments = greedy_sequences(metrics[0], W, torch.zeros_like(W, dtype=torch.bool))
    for i in range(W.shape[0]):
        assert sorted(order[i].tolist()) == list(range(5))  # every entry once
        for k in range(1, 5):
            ref_cost, _ = obs_set_removal(H[i], torch.cat([W[i], b[i : i + 1]]),
                                          order[i, :k].tolist())
            torch.testing.assert_close(increments[i, :k].sum(), ref_cost, rtol=1e-8, atol=1e-13)
        # the first step is the cheapest single removal
        torch.testing.assert_close(increments[i, 0], single_costs(metrics[0], W)[0][i].min())


@pytest.mark.parametrize("bias", [True, False])
def test_output_layer_update_is_a_least_squares_fit(undamped, bias):
    torch.manual_seed(0)
    layer = nn.Linear(6, 3, bias=bias).double()
    X = _data(n=300, d=6)
    with torch.no_grad():
        target = layer(X).numpy()
    for name in undamped:
        pruned = copy.deepcopy(layer)
        report = prune_model(pruned, X, ratio=0.5, method=name, batch_size=128)
        W = pruned.weight.detach().numpy()
        for i in range(3):
            kept = W[i] != 0
            design = np.hstack([X.numpy()[:, kept], np.ones((300, 1))]) if bias else \
                X.numpy()[:, kept]
            solution = np.linalg.lstsq(design, target[:, i], rcond=None)[0]
            np.testing.assert_allclose(W[i, kept], solution[: kept.sum()], rtol=1e-8, atol=1e-10)
            if bias:
                np.testing.assert_allclose(pruned.bias.detach().numpy()[i], solution[-1],
                                           rtol=1e-8, atol=1e-10)
        assert report.layers[0].n_removed == 9
        assert report.layers[0].weight_change > 0


@pytest.mark.parametrize("method", ["ec_obs", "ec_obs_exact"])
@pytest.mark.parametrize("scope", ["global", "layer", "magnitude_budget"])
@pytest.mark.parametrize("steps", [1, 3])
def test_counts_are_exact_and_removed_weights_exact_zeros(method, scope, steps):
    net = random_mlp([5, 8, 6, 2], nn.Tanh, seed=6, dtype=torch.float32)
    X = _data(dtype=torch.float32)
    report = prune_model(net, X, ratio=0.6, method=method, scope=scope, steps=steps,
                         layer_floor=0.1 if scope == "global" else 0.0)
    sizes = [layer.n_weights for layer in report.layers]
    removed = [layer.n_removed for layer in report.layers]
    if scope == "layer":
        assert removed == [round(0.6 * n) for n in sizes]
    else:
        assert sum(removed) == round(0.6 * sum(sizes))
    if scope == "global":
        assert all(n - r >= 0.1 * n for n, r in zip(sizes, removed))
    for module in net.modules():
        if isinstance(module, nn.Linear):
            assert int((module.weight == 0).sum()) == int((module.weight_mask == 0).sum())


def test_masks_hold_through_training_and_the_report_says_what_moved():
    net = random_mlp([5, 8, 1], nn.Tanh, seed=7, dtype=torch.float32)
    X = _data(dtype=torch.float32)
    y = X[:, :1].sin()
    report = prune_model(net, X, ratio=0.7, method="ec_obs")
    zeros = [m.weight == 0 for m in net.modules() if isinstance(m, nn.Linear)]
    optimizer = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(20):
        optimizer.zero_grad()
        ((net(X) - y) ** 2).mean().backward()
        optimizer.step()
    after = [m.weight == 0 for m in net.modules() if isinstance(m, nn.Linear)]
    assert all(bool((a[z]).all()) for a, z in zip(after, zeros))
    # (the output layer may lose only inputs that became constant: the bias alone absorbs them)
    assert report.layers[0].n_removed_now > 0 and report.layers[0].weight_change > 0
    assert all(layer.bias_shift is not None for layer in report.layers)
    assert report.to_dict()["layers"]["0"]["weight_change"] == report.layers[0].weight_change


def test_dead_units_are_free_and_not_updated():
    net = random_mlp([5, 6, 2], nn.Tanh, seed=8)
    with torch.no_grad():
        net[2].weight[:, 0] = 0  # hidden unit 0 never reaches the output
    X = _data()
    scores = score_weights(net, X, method="ec_obs").scores[0]
    assert (scores[0] == 0).all() and (scores[1:] > 0).all()
    before = net[0].bias.detach().clone()
    # 42 weights: the unit's 2 outgoing ones already absent, and its 5 incoming ones free
    prune_model(net, X, ratio=7 / 42, method="ec_obs")
    assert (net[0].weight[0] == 0).all()
    assert net[0].bias[0] == before[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beats_ec_and_magnitude_right_after_pruning(seed):
    """A statistical claim on fixed seeds, with a margin that holds: measured, EC's loss is
    2.2-4.7x and magnitude's 8.6-23x EC-OBS's on these seeds; asserted, 1.4x and 2x."""
    net, X, y = trained_sine_mlp(seed)
    losses = {}
    for method in ("magnitude", "ec", "ec_obs"):
        pruned = copy.deepcopy(net)
        prune_model(pruned, X, ratio=0.8, method=method)
        with torch.no_grad():
            losses[method] = float(((pruned(X) - y) ** 2).mean())
    assert losses["ec_obs"] < 0.7 * losses["ec"]
    assert losses["ec_obs"] < 0.5 * losses["magnitude"]


def test_any_module_through_autograd():
    net = ResidualMLP(4, 6, 2).double()
    X = _data(d=4)
    before = copy.deepcopy(net)
    report = prune_model(net, X, ratio=0.5, method="ec_obs")
    assert report.sparsity == pytest.approx(round(0.5 * 72) / 72)
    with torch.no_grad():
        assert (net(X) - before(X)).abs().max() < (before(X)).abs().max()


def test_compensate_false_and_bad_options_are_refused():
    net = random_mlp([3, 4, 1], nn.Tanh, seed=9)
    with pytest.raises(ValueError, match="compensate=False"):
        prune_model(net, _data(d=3), ratio=0.5, method="ec_obs", compensate=False)
    with pytest.raises(ValueError, match="hessian"):
        register_ec_obs("_bad", "bad", hessian="diagonal")
    with pytest.raises(ValueError, match="damp"):
        register_ec_obs("_bad", "bad", damp=-1.0)
    assert "_bad" not in SCORERS
