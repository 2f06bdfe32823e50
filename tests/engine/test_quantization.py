"""Quantisers: the sweep against direct least squares, GPTQ against the published update,
grids, pruned zeros, and compensation that pays."""

import copy
import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from sk_ecprune.engine import (
    GPTQ,
    ECOBSRounding,
    QuantizationReport,
    prune_model,
    quantize_model,
)
from tests._reference import ResidualMLP, random_mlp

METHODS = ["ec_obs", "ec", "gptq", "rtn"]


def _data(n=200, d=6, seed=0, shift=0.5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=torch.float64, generator=g) + shift


def _layer(d=6, m=4, seed=0, pruned=None):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(d, m)).double()
    if pruned is not None:
        prune.custom_from_mask(net[0], "weight", pruned)
    return net


def _scale(row, qmax):
    largest = np.abs(row).max()
    return float(np.float32(np.float32(largest) / qmax)) if largest > 0 else 1.0


def _sweep_by_least_squares(W0, b0, Z, bits):
    """Each column step as a direct least-squares problem on the data: columns up to ``j``
    are fixed at their rounded values, the later kept ones and the bias fit the layer's
    original output of that row. Pruned (zero) weights stay out."""
    qmax = 2 ** (bits - 1) - 1
    W, b = W0.copy(), b0.copy()
    ones = np.ones((len(Z), 1))
    for i, row in enumerate(W0):
        target = Z @ row + b0[i]
        kept = np.flatnonzero(row)
        scale = _scale(row, qmax)
        w = row.copy()
        for k, j in enumerate(kept):
            w[j] = np.clip(np.round(w[j] / scale), -qmax, qmax) * scale
            free = kept[k + 1:]
            fixed = kept[: k + 1]
            A = np.hstack([Z[:, free], ones])
            solution, *_ = np.linalg.lstsq(A, target - Z[:, fixed] @ w[fixed], rcond=None)
            w[free] = solution[:-1]
            b[i] = solution[-1]
        W[i] = w
    return W, b


@pytest.mark.parametrize("pruned", [False, True])
def test_the_ec_obs_sweep_is_a_least_squares_solve_per_column(pruned):
    X = _data()
    mask = None
    if pruned:
        mask = torch.rand(4, 6, generator=torch.Generator().manual_seed(1)) > 0.3
    net = _layer(pruned=mask)
    W0 = net[0].weight.detach().numpy().copy()
    b0 = net[0].bias.detach().numpy().copy()
    expected_W, expected_b = _sweep_by_least_squares(W0, b0, X.numpy(), 3)
    quantize_model(net, X, 3, method=ECOBSRounding(damp=0.0))
    np.testing.assert_allclose(net[0].weight.detach().numpy(), expected_W, rtol=0, atol=1e-6)
    np.testing.assert_allclose(net[0].bias.detach().numpy(), expected_b, rtol=0, atol=1e-6)


def _published_gptq(W, Z, bits, percdamp=0.01):
    """GPTQ (Frantar et al. 2023, Algorithm 1) with a symmetric per-row grid, column by
    column: ``H = 2 Z^T Z / n`` damped, ``U = chol(H^-1)`` upper, ``W[:, j:] -= err U[j, j:]``."""
    qmax = 2 ** (bits - 1) - 1
    W = W.copy()
    H = 2 * Z.T @ Z / len(Z)
    H += percdamp * np.mean(np.diag(H)) * np.eye(len(H))
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    scales = np.array([_scale(row, qmax) for row in W])
    for j in range(W.shape[1]):
        q = np.clip(np.round(W[:, j] / scales), -qmax, qmax) * scales
        err = (W[:, j] - q) / U[j, j]
        W[:, j:] -= np.outer(err, U[j, j:])
        W[:, j] = q
    return W


def test_gptq_is_the_published_update():
    X = _data(d=10, seed=3)
    net = _layer(d=10, m=5, seed=3)
    W0 = net[0].weight.detach().numpy().copy()
    b0 = net[0].bias.detach().clone()
    expected = _published_gptq(W0, X.numpy(), 3)
    report = quantize_model(net, X, 3, method="gptq")
    np.testing.assert_allclose(net[0].weight.detach().numpy(), expected, rtol=0, atol=1e-7)
    assert torch.equal(net[0].bias.detach(), b0)  # GPTQ never moves the bias
    assert report.compensated  # the later columns absorbed the errors


@pytest.mark.parametrize("method", METHODS)
def test_every_weight_lies_on_its_rows_grid_and_pruned_zeros_stay(method):
    net = random_mlp([6, 10, 8, 3], nn.Tanh, seed=4).float()
    X = _data(d=6).float()
    prune_model(net, X, ratio=0.5, method="magnitude")
    with torch.no_grad():
        net[2].weight_orig[3] = 0.0  # a row without weights
        net(X)  # recomputes the masked weights outside autograd (deepcopy needs leaves)
    zeros = [(layer.weight == 0).clone() for layer in (net[0], net[2], net[4])]
    for bits in (2, 3, 4):
        report = quantize_model(copy.deepcopy(net), X, bits, method=method)
        model = copy.deepcopy(net)
        quantize_model(model, X, bits, method=method)
        qmax = 2 ** (bits - 1) - 1
        for layer, zero, lq in zip((model[0], model[2], model[4]), zeros, report.layers):
            W = layer.weight.detach()
            assert lq.codes.dtype == np.int8 and lq.scales.dtype == np.float32
            assert lq.codes.shape == tuple(W.shape) and lq.scales.shape == (W.shape[0],)
            assert np.abs(lq.codes).max() <= qmax
            assert torch.equal(W, torch.from_numpy(lq.codes).float()
                               * torch.from_numpy(lq.scales).unsqueeze(1))
            assert (W[zero] == 0).all() and (lq.codes[zero.numpy()] == 0).all()
            for row in W:
                assert len(torch.unique(row[row != 0])) <= 2 * qmax  # 2^b - 1 with zero
    assert report.layers[1].scales[3] == 1.0 and not report.layers[1].codes[3].any()


def test_ec_obs_beats_round_to_nearest():
    """Output distortion at 3 bits on a fixed-seed 16-32-32-3 network: EC-OBS at most half
    of round-to-nearest's (measured ratio about 0.2)."""
    net = random_mlp([16, 32, 32, 3], nn.Tanh, seed=5)
    X = _data(n=600, d=16, seed=5)
    with torch.no_grad():
        reference = net(X)
    errors = {}
    for method in ("rtn", "ec_obs"):
        model = copy.deepcopy(net)
        quantize_model(model, X, 3, method=method)
        with torch.no_grad():
            errors[method] = float((model(X) - reference).square().mean())
    assert errors["ec_obs"] < 0.5 * errors["rtn"], errors


def test_any_module_through_autograd():
    net = ResidualMLP(4, 6, 2).double()
    X = _data(d=4)
    with torch.no_grad():
        before = net(X)
    errors = {}
    for method in ("rtn", "ec_obs"):
        model = copy.deepcopy(net)
        report = quantize_model(model, X, 3, method=method)
        assert len(report.layers) == 3
        with torch.no_grad():
            errors[method] = float((model(X) - before).square().mean())
    assert errors["ec_obs"] < errors["rtn"], errors


def test_the_report_is_plain_data_and_bad_arguments_are_refused():
    net = random_mlp([3, 4, 2], nn.Tanh, seed=6)
    X = _data(d=3)
    report = quantize_model(net, X, 4, method="ec", max_samples=50, random_state=0)
    assert isinstance(report, QuantizationReport)
    copy_ = pickle.loads(pickle.dumps(report))
    assert np.array_equal(copy_.layers[0].codes, report.layers[0].codes)
    assert all(not isinstance(v, torch.Tensor) for layer in report.layers
               for v in vars(layer).values())
    for bits in (1, 9, 4.0, True):
        with pytest.raises(ValueError, match="bits"):
            quantize_model(net, X, bits)
    with pytest.raises(ValueError, match="Unknown method 'obd'"):
        quantize_model(net, X, 4, method="obd")
    with pytest.raises(ValueError, match="method must be a name"):
        quantize_model(net, X, 4, method=42)
    assert quantize_model(net, X, 4, method=GPTQ).method == "GPTQ(damp=0.01)"


def test_a_new_quantiser_is_one_class_and_one_registration():
    from sk_ecprune.engine import METHODS, register_method

    @register_method("_test_undamped")
    class Undamped(ECOBSRounding):
        """EC-OBS rounding without damping."""

        def __init__(self):
            super().__init__(damp=0.0)

    try:
        net = random_mlp([4, 6, 2], nn.Tanh, seed=7)
        X = _data(d=4)
        a, b = copy.deepcopy(net), copy.deepcopy(net)
        quantize_model(a, X, 3, method="_test_undamped")
        quantize_model(b, X, 3, method=ECOBSRounding(damp=0.0))
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
        assert "_test_undamped" not in METHODS.names("weight")  # registered for its kind
    finally:
        METHODS.remove("_test_undamped", "quantize")


@pytest.mark.parametrize("method", ["ec", "ec_obs"])
def test_the_bias_keeps_the_mean_output_of_a_layer(method):
    """On one linear layer (every sensitivity 1) the bias shift of EC and EC-OBS makes the
    mean output over the data what it was; round to nearest and GPTQ leave it off."""
    X = _data(seed=8, shift=2.0)
    net = _layer(seed=8)
    with torch.no_grad():
        before = net(X).mean(0)
    quantize_model(net, X, 2, method=method)
    with torch.no_grad():
        torch.testing.assert_close(net(X).mean(0), before, rtol=0, atol=1e-6)
    plain = _layer(seed=8)
    quantize_model(plain, X, 2, method="rtn")
    with torch.no_grad():
        assert (plain(X).mean(0) - before).abs().max() > 1e-3


def test_rows_too_large_for_their_own_factors_share_one_order(monkeypatch):
    """Beyond the per-row budget, pruned zeros are set back to zero at their turn: they stay
    zero, every weight is on its grid, and the layer is still closer than round to nearest."""
    from sk_ecprune.engine import quantizers

    X = _data(n=400, d=12, seed=9)
    mask = torch.rand(6, 12, generator=torch.Generator().manual_seed(9)) > 0.4
    errors = {}
    for budget, method in ((0, "ec_obs"), (quantizers.MAX_ROW_FACTOR_FLOPS, "ec_obs"),
                           (0, "rtn")):
        monkeypatch.setattr(quantizers, "MAX_ROW_FACTOR_FLOPS", budget)
        net = _layer(d=12, m=6, seed=9, pruned=mask)
        with torch.no_grad():
            before = net(X)
        report = quantize_model(net, X, 3, method=method)
        W = net[0].weight.detach()
        assert (W[~mask] == 0).all()
        assert torch.equal(W, torch.from_numpy(report.layers[0].weight()).double())
        with torch.no_grad():
            errors[(budget, method)] = float((net(X) - before).square().mean())
    shared, own, nearest = errors.values()
    assert own <= shared * 1.0001 and shared < nearest, errors
