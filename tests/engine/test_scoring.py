"""The scoring methods against independent computations of their definitions."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from sk_ecprune.engine import SCORERS, Importance, register_scorer, score_weights

from .._reference import (
    ResidualMLP,
    literal_nonlinear,
    per_sample_jacobians,
    random_mlp,
    reference_ec,
)

ACTIVATIONS = [nn.PReLU, nn.ReLU, nn.Tanh, nn.GELU, nn.Sigmoid]


def _close(actual, expected, rtol):
    """Relative agreement, measured against the largest entry of the layer."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_ec_closed_form_matches_per_sample_autograd_float64(activation):
    module = random_mlp([4, 7, 5, 3], activation, seed=1)
    X = torch.randn(40, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    importance = score_weights(module, X, method="ec", batch_size=16)
    ref_scores, ref_shifts = reference_ec(module, X)
    for ours, ref in zip(importance.scores, ref_scores):
        _close(ours, ref, 1e-10)
    for ours, ref in zip(importance.bias_shifts, ref_shifts):
        _close(ours, ref, 1e-10)


@pytest.mark.parametrize("activation", [nn.PReLU, nn.Tanh])
def test_ec_closed_form_float32_agrees_to_1e_5(activation):
    module64 = random_mlp([6, 9, 8, 4], activation, seed=3)
    # Inputs far from zero mean make the uncentred C - A^2/B cancel badly in float32; the
    # first bias keeps tanh out of saturation, where float32's own 1 - tanh^2 loses all digits.
    X = 5.0 + torch.randn(300, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        module64[0].bias.copy_(-module64[0].weight @ X.mean(0))
    module32 = copy.deepcopy(module64).float()
    ours = score_weights(module32, X.float(), method="ec", batch_size=128)
    ref_scores, ref_shifts = reference_ec(module64, X)
    for score, ref in zip(ours.scores, ref_scores):
        _close(score, ref, 1e-5)
    for shift, ref in zip(ours.bias_shifts, ref_shifts):
        _close(shift, ref, 1e-5)


def test_ec_fisher_metric_matches_per_sample_autograd():
    module = random_mlp([5, 8, 6, 4], nn.PReLU, seed=5)
    X = torch.randn(30, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    importance = score_weights(module, X, method="ec", output_metric="fisher")
    ref_scores, ref_shifts = reference_ec(module, X, metric="fisher")
    for ours, ref in zip(importance.scores + importance.bias_shifts, ref_scores + ref_shifts):
        _close(ours, ref, 1e-10)
    # and it is a different measure from the Euclidean one
    euclidean = score_weights(module, X, method="ec").scores
    assert not torch.allclose(euclidean[0], importance.scores[0])


def test_ec_on_a_residual_network_matches_per_sample_autograd():
    torch.manual_seed(7)
    module = ResidualMLP(3, 6, 2).double()
    X = torch.randn(25, 3, dtype=torch.float64)
    importance = score_weights(module, X, method="ec", batch_size=10)
    ref_scores, ref_shifts = reference_ec(module, X)
    for ours, ref in zip(importance.scores + importance.bias_shifts, ref_scores + ref_shifts):
        _close(ours, ref, 1e-10)


def test_obd_is_ec_without_compensation():
    module = random_mlp([4, 6, 3], nn.Tanh, seed=8)
    X = 2 + torch.randn(50, 4, dtype=torch.float64)
    obd = score_weights(module, X, method="obd").scores
    # W^2 E[dy^T dy] per weight, from the per-sample Jacobians directly
    expected = [torch.zeros_like(s) for s in obd]
    weights = [module[0].weight.detach(), module[2].weight.detach()]
    for _, jw, _ in per_sample_jacobians(module, X):
        for l, W in enumerate(weights):
            expected[l] += (jw[l] * W).square().sum(0) / X.shape[0]
    for ours, ref in zip(obd, expected):
        _close(ours, ref, 1e-10)
    ec = score_weights(module, X, method="ec").scores
    assert all((e <= o + 1e-12).all() for e, o in zip(ec, obd))  # compensation only helps


def test_nonlinear_equals_a_literal_loop_over_weights():
    module = random_mlp([3, 5, 4, 2], nn.PReLU, seed=9)
    X = torch.randn(20, 3, dtype=torch.float64)
    ours = score_weights(module, X, method="nonlinear", batch_size=8).scores
    for score, ref in zip(ours, literal_nonlinear(module, X)):
        _close(score, ref, 1e-10)


def test_nonlinear_on_a_residual_network_falls_back_to_replicating_the_input():
    torch.manual_seed(10)
    module = ResidualMLP(3, 4, 2).double()
    X = torch.randn(12, 3, dtype=torch.float64)
    ours = score_weights(module, X, method="nonlinear", batch_size=5).scores
    for score, ref in zip(ours, literal_nonlinear(module, X)):
        _close(score, ref, 1e-10)


def test_ec_and_nonlinear_agree_exactly_on_the_output_layer():
    module = random_mlp([4, 6, 6, 3], nn.GELU, seed=11)
    X = torch.randn(64, 4, dtype=torch.float64)
    ec = score_weights(module, X, method="ec")
    nonlinear = score_weights(module, X, method="nonlinear")
    _close(ec.scores[-1], nonlinear.scores[-1], 1e-10)
    _close(ec.bias_shifts[-1], nonlinear.bias_shifts[-1], 1e-10)


def _remove_one(module, layer_index, i, j, shift):
    pruned = copy.deepcopy(module)
    layer = [m for m in pruned.modules() if isinstance(m, nn.Linear)][layer_index]
    with torch.no_grad():
        layer.weight[i, j] = 0
        layer.bias[i] += shift
    return pruned


def test_ec_score_predicts_the_real_output_change_as_the_weight_shrinks():
    module = random_mlp([4, 8, 6, 2], nn.Tanh, seed=12)
    X = torch.randn(100, 4, dtype=torch.float64)
    layer = module[2]
    relative_errors = []
    for scale in [1e-1, 1e-2, 1e-3]:
        with torch.no_grad():
            layer.weight[3, 5] = scale
        importance = score_weights(module, X, method="ec")
        shift = importance.bias_shifts[1][3, 5]
        with torch.no_grad():
            real = (_remove_one(module, 1, 3, 5, shift)(X) - module(X)).square().sum(1).mean()
        predicted = importance.scores[1][3, 5]
        relative_errors.append(abs(real / predicted - 1).item())
    assert relative_errors[0] > relative_errors[1] > relative_errors[2]
    assert relative_errors[2] < 1e-2


def test_ec_shift_minimises_the_linearised_output_change():
    module = random_mlp([4, 8, 3], nn.Sigmoid, seed=13)
    X = 1 + torch.randn(60, 4, dtype=torch.float64)
    importance = score_weights(module, X, method="ec")
    i, j = 2, 1
    W = module[0].weight[i, j].detach()
    jac = list(per_sample_jacobians(module, X))

    def linearised_change(shift):
        return sum((jw[0][:, i, j] * W - jb[0][:, i] * shift).square().sum() for _, jw, jb in jac) / len(jac)

    best = importance.bias_shifts[0][i, j]
    at_best = linearised_change(best)
    torch.testing.assert_close(at_best, importance.scores[0][i, j], rtol=1e-10, atol=0)
    for other in [0.0, best * 0.5, best * 1.5, best + 1e-3, best - 1e-3, W * X[:, j].mean()]:
        assert linearised_change(other) >= at_best


def test_dead_relu_units_get_zero_score_and_no_shift():
    module = random_mlp([3, 6, 4, 2], nn.ReLU, seed=14)
    with torch.no_grad():
        module[0].bias[[1, 4]] = -1e3  # never active on the data below
    X = torch.randn(50, 3, dtype=torch.float64)
    importance = score_weights(module, X, method="ec")
    for scores, shifts in zip(importance.scores, importance.bias_shifts):
        assert torch.isfinite(scores).all() and torch.isfinite(shifts).all()
    assert (importance.scores[0][[1, 4]] == 0).all()
    assert (importance.bias_shifts[0][[1, 4]] == 0).all()
    # the next layer sees a constant 0 from them: nothing to remove
    assert (importance.scores[1][:, [1, 4]] == 0).all()


def test_gradient_magnitude_uses_the_loss_gradient_over_all_data():
    module = random_mlp([4, 5, 2], nn.Tanh, seed=15)
    X = torch.randn(37, 4, dtype=torch.float64)
    y = torch.randn(37, 2, dtype=torch.float64)
    ours = score_weights(module, X, y, method="gradient_magnitude", loss=nn.MSELoss(),
                         batch_size=10).scores
    module.zero_grad()
    nn.MSELoss()(module(X), y).backward()
    for score, layer in zip(ours, [module[0], module[2]]):
        _close(score, (layer.weight * layer.weight.grad).abs().detach(), 1e-10)
    with pytest.raises(ValueError, match="needs the targets y and a loss"):
        score_weights(module, X, method="gradient_magnitude")


def test_magnitude_and_random():
    module = random_mlp([4, 5, 2], nn.Tanh, seed=16)
    X = torch.randn(10, 4, dtype=torch.float64)
    assert torch.equal(score_weights(module, X, method="magnitude").scores[0],
                       module[0].weight.abs())
    a = score_weights(module, X, method="random", random_state=0).scores
    b = score_weights(module, X, method="random", random_state=0).scores
    c = score_weights(module, X, method="random", random_state=1).scores
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_scores_have_weight_shapes_in_module_order_for_every_method():
    module = random_mlp([5, 7, 3], nn.PReLU, seed=17, dtype=torch.float32)
    X = np.random.default_rng(0).normal(size=(30, 5))
    y = np.random.default_rng(1).normal(size=(30, 3))
    for method in SCORERS:
        scores = score_weights(module, X, y, method=method, loss=nn.MSELoss(),
                               random_state=0).scores
        assert [tuple(s.shape) for s in scores] == [(7, 5), (3, 7)], method


def test_scoring_leaves_inputs_module_mode_and_gradients_untouched():
    module = random_mlp([4, 6, 2], nn.PReLU, seed=18, dtype=torch.float32).train()
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    X_before = X.copy()
    before = copy.deepcopy(module.state_dict())
    score_weights(module, X, method="ec")
    assert module.training
    assert np.array_equal(X, X_before)
    assert all(p.grad is None for p in module.parameters())
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_registering_a_new_method_is_one_function():
    @register_scorer("bias_free_magnitude_test")
    def _square(module, layers, data, **_):
        return Importance([layer.weight.detach().square() for layer in layers])

    try:
        module = random_mlp([3, 4, 2], nn.Tanh, seed=19)
        importance = score_weights(module, torch.zeros(2, 3, dtype=torch.float64),
                                   method="bias_free_magnitude_test")
        assert torch.equal(importance.scores[1], module[2].weight.detach().square())
        assert not importance.compensates  # it returned no bias shifts
    finally:
        del SCORERS["bias_free_magnitude_test"]


@pytest.mark.parametrize(
    "kwargs, X, message",
    [
        ({"method": "ecc"}, np.zeros((3, 4)), "Unknown method 'ecc'"),
        ({"output_metric": "kl"}, np.zeros((3, 4)), "Unknown output_metric"),
        ({}, np.full((3, 4), np.nan), "NaN or infinite"),
        ({}, np.zeros(4), r"shape \(n_samples, n_features\)"),
        ({}, np.zeros((0, 4)), "n_samples >= 1"),
        ({"batch_size": 0}, np.zeros((3, 4)), "batch_size must be a positive integer"),
    ],
)
def test_bad_input_is_named(kwargs, X, message):
    module = random_mlp([4, 3, 2], nn.Tanh, seed=20, dtype=torch.float32)
    with pytest.raises(ValueError, match=message):
        score_weights(module, X, **kwargs)


def test_module_without_linear_layers_is_refused():
    with pytest.raises(ValueError, match="no nn.Linear layer"):
        score_weights(nn.Sequential(nn.Tanh()), np.zeros((2, 2)))


def test_a_layer_applied_twice_is_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(3, 3)

        def forward(self, x):
            return self.layer(torch.tanh(self.layer(x)))

    with pytest.raises(ValueError, match="applied more than once"):
        score_weights(Twice(), np.zeros((2, 3), dtype=np.float32))


# ---------------------------------------------------------------------------- sample weights
def _weighted_and_repeated(seed=21, n=30):
    """Rows, integer weights (zeros included), and the rows repeated by their weights."""
    generator = torch.Generator().manual_seed(seed)
    X = 0.5 + torch.randn(n, 4, dtype=torch.float64, generator=generator)
    y = torch.randn(n, 3, dtype=torch.float64, generator=generator)
    weights = torch.randint(0, 4, (n,), generator=generator)
    weights[:2] = torch.tensor([0, 3])  # a dropped row and a tripled one, whatever the draw
    rows = torch.repeat_interleave(torch.arange(n), weights)
    return X, y, weights, X[rows], y[rows]


@pytest.mark.parametrize("method, metric", [("ec", "euclidean"), ("ec", "fisher"),
                                            ("obd", "euclidean"), ("nonlinear", "fisher"),
                                            ("gradient_magnitude", "euclidean")])
def test_integer_weights_score_as_repeated_rows(method, metric):
    module = random_mlp([4, 7, 5, 3], nn.Tanh, seed=22)
    X, y, weights, X_rep, y_rep = _weighted_and_repeated()
    options = dict(method=method, output_metric=metric, loss=nn.MSELoss(), batch_size=8)
    weighted = score_weights(module, X, y, sample_weight=weights, **options)
    repeated = score_weights(module, X_rep, y_rep, **options)
    unweighted = score_weights(module, X, y, **options)
    pairs = list(zip(weighted.scores, repeated.scores))
    if weighted.compensates:
        pairs += list(zip(weighted.bias_shifts, repeated.bias_shifts))
    for ours, ref in pairs:
        _close(ours, ref, 1e-10)
    assert not torch.allclose(weighted.scores[0], unweighted.scores[0], rtol=1e-3)


def test_zero_weights_drop_rows_and_uniform_weights_change_nothing():
    module = random_mlp([4, 6, 3], nn.PReLU, seed=23)
    X, _, weights, _, _ = _weighted_and_repeated()
    kept = weights > 0
    dropped = score_weights(module, X, sample_weight=kept.double())
    only_kept = score_weights(module, X[kept])
    uniform = score_weights(module, X, sample_weight=torch.full((len(X),), 2.5))
    plain = score_weights(module, X)
    for a, b in zip(dropped.scores + dropped.bias_shifts, only_kept.scores + only_kept.bias_shifts):
        _close(a, b, 1e-12)
    for a, b in zip(uniform.scores + uniform.bias_shifts, plain.scores + plain.bias_shifts):
        _close(a, b, 1e-12)


def test_magnitude_and_random_ignore_the_weights():
    module = random_mlp([4, 5, 2], nn.Tanh, seed=24)
    X = torch.randn(12, 4, dtype=torch.float64)
    weights = torch.arange(12.0)
    for method in ("magnitude", "random"):
        a = score_weights(module, X, method=method, random_state=0, sample_weight=weights)
        b = score_weights(module, X, method=method, random_state=0)
        assert all(torch.equal(u, v) for u, v in zip(a.scores, b.scores)), method


def test_scoring_data_yields_weights_with_each_batch():
    from sk_ecprune.engine.recording import ScoringData

    X = torch.randn(10, 3)
    plain = ScoringData.from_arrays(X, None, 4, "cpu", torch.float64)
    assert [wb for _, _, wb in plain] == [None, None, None] and plain.total_weight == 10
    weights = np.arange(10, dtype=np.int64)  # any real array-like
    data = ScoringData.from_arrays(X, None, 4, "cpu", torch.float64, sample_weight=weights)
    batches = list(data)
    assert [len(wb) for _, _, wb in batches] == [4, 4, 2]
    assert all(wb.dtype == torch.float64 for _, _, wb in batches)
    assert torch.equal(torch.cat([wb for _, _, wb in batches]), torch.arange(10.0, dtype=torch.float64))
    assert data.total_weight == 45


@pytest.mark.parametrize(
    "weights, message",
    [
        (np.ones(5), r"shape \(6,\), one weight per row"),
        (np.ones((6, 1)), r"shape \(6,\)"),
        (np.array([1, 1, -1, 1, 1, 1.0]), "non-negative"),
        (np.array([1, 1, np.nan, 1, 1, 1.0]), "NaN or infinite"),
        (np.array([1, 1, np.inf, 1, 1, 1.0]), "NaN or infinite"),
        (np.zeros(6), "sums to zero"),
    ],
)
def test_bad_weights_are_named(weights, message):
    module = random_mlp([4, 3, 2], nn.Tanh, seed=25)
    with pytest.raises(ValueError, match=message):
        score_weights(module, np.zeros((6, 4)), sample_weight=weights)


def test_gradient_magnitude_weights_need_a_loss_module():
    module = random_mlp([4, 3, 2], nn.Tanh, seed=26)
    X, y = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)

    def mse(output, target):
        return (output - target).square().mean()

    score_weights(module, X, y, method="gradient_magnitude", loss=mse)  # fine unweighted
    with pytest.raises(ValueError, match="with sample weights needs a torch loss module"):
        score_weights(module, X, y, method="gradient_magnitude", loss=mse,
                      sample_weight=torch.ones(6))
