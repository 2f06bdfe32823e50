"""quantize_model: grids, kept zeros, and the sweeps against direct least squares."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from sk_ecprune.engine import QUANTIZERS, quantize_model
from sk_ecprune.engine.masks import effective_weight


def _toy(bias=True, n=400, d=6, out=3, seed=0):
    """A float64 single linear layer and correlated inputs with nonzero means."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + 0.5
    layer = nn.Linear(d, out, bias=bias).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out, d, generator=g, dtype=torch.float64))
    return layer, X


def _sequential_least_squares(w, b, X, scale, qmax, bias):
    """The sweep by brute force: round column j, then refit the later columns (and the
    bias) by least squares to the original row's outputs on the data."""
    target = X @ w + (b if bias else 0.0)
    w = w.clone()
    codes = torch.zeros_like(w)
    for j in range(len(w)):
        codes[j] = torch.clamp(torch.round(w[j] / scale), -qmax, qmax)
        fixed = X[:, : j + 1] @ (codes[: j + 1] * scale)
        rest = X[:, j + 1:]
        if bias:
            rest = torch.cat([rest, torch.ones(len(X), 1, dtype=X.dtype)], 1)
        if rest.shape[1]:
            sol = torch.linalg.lstsq(rest, (target - fixed).unsqueeze(1)).solution.squeeze(1)
            w[j + 1:] = sol[: len(w) - j - 1]
    return codes


@pytest.mark.parametrize(("method", "bias"), [("ec_obs", True), ("gptq", False)])
def test_sweep_is_sequential_least_squares(method, bias):
    # One linear layer with the Euclidean metric: every unit's s is 1, so EC-OBS's form is
    # the input covariance (bias free) and GPTQ's the uncentred second moment (no bias).
    layer, X = _toy(bias=bias)
    W0 = layer.weight.detach().clone()
    b0 = None if layer.bias is None else layer.bias.detach().clone()
    bits, qmax = 3, 3
    report = quantize_model(layer, X, bits, method=method, damp=0.0)
    codes = torch.from_numpy(report.layers[0].codes.astype(np.float64))
    scales = torch.from_numpy(report.layers[0].scales.astype(np.float64))
    for i in range(len(W0)):
        expected = _sequential_least_squares(W0[i], 0.0 if b0 is None else b0[i], X,
                                             scales[i], qmax, bias)
        np.testing.assert_array_equal(codes[i].numpy(), expected.numpy())
    if bias:  # the bias absorbs the mean change: output means kept (to the float32 grid)
        np.testing.assert_allclose(layer(X).mean(0).detach(),
                                   (X @ W0.T + b0).mean(0), rtol=0, atol=1e-6)  # float32 grid


@pytest.mark.parametrize("method", QUANTIZERS)
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weights_on_grid_and_pruned_zeros_kept(method, bits):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))
    prune.random_unstructured(module[0], "weight", amount=0.4)  # a masked layer
    zeros = module[0].weight == 0
    X = torch.randn(200, 5)
    report = quantize_model(module, X, bits, method=method)
    qmax = 2 ** (bits - 1) - 1
    assert [r.name for r in report.layers] == ["0", "2"]
    for record, layer in zip(report.layers, [module[0], module[2]]):
        assert record.codes.dtype == np.int8 and record.scales.dtype == np.float32
        assert np.abs(record.codes.astype(int)).max() <= qmax
        W = effective_weight(layer).numpy()  # the masked layer's weight_orig * mask
        np.testing.assert_array_equal(record.codes.astype(np.float32)
                                      * record.scales[:, None], W)
        assert max(len(np.unique(row)) for row in W) <= 2 ** bits - 1
    assert (effective_weight(module[0])[zeros] == 0).all()
    assert report.seconds > 0


def test_compensation_beats_round_to_nearest_at_low_bits():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                           nn.Linear(16, 1))
    X = torch.randn(500, 8) + 0.3
    with torch.no_grad():
        reference = module(X)
    errors = {}
    for method in QUANTIZERS:
        copy_ = copy.deepcopy(module)
        quantize_model(copy_, X, 3, method=method)
        with torch.no_grad():
            errors[method] = float(((copy_(X) - reference) ** 2).mean())
    assert errors["ec_obs"] < errors["rtn"] and errors["gptq"] < errors["rtn"]
    assert errors["ec"] < errors["rtn"]


def test_bad_arguments_are_named():
    layer, X = _toy()
    with pytest.raises(ValueError, match="bits"):
        quantize_model(layer, X, 9)
    with pytest.raises(ValueError, match="method"):
        quantize_model(layer, X, 4, method="nearest")
