"""to_sparse: CSR layers for inference (issue #14), the same outputs as the masked module."""

import pickle

import pytest
import torch
from torch import nn

from sk_ecprune.engine import CSRLinear, prune_model, to_sparse

from .._reference import ResidualMLP, random_mlp


def _data(n=64, d=6):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("make", [lambda: random_mlp([6, 16, 8, 3], nn.PReLU, 0, torch.float32),
                                  lambda: ResidualMLP(6, 16, 3)])
def test_sparse_layers_give_the_masked_modules_outputs(make):
    module = make().eval()
    X = _data()
    prune_model(module, X, ratio=0.92, method="magnitude", scope="layer")
    sparse = to_sparse(module)
    assert all(not isinstance(m, nn.Linear) for m in sparse.modules())  # all above 90%
    with torch.no_grad():
        torch.testing.assert_close(sparse(X), module(X), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sparse(X[0]), module(X[0]), rtol=1e-5, atol=1e-6)


def test_only_layers_at_the_threshold_become_sparse_and_the_input_is_untouched():
    module = random_mlp([6, 16, 8, 3], nn.Tanh, 1, torch.float32)
    with torch.no_grad():
        module[0].weight[:, 1:] = 0  # 5/6 zeros
    before = [p.detach().clone() for p in module.parameters()]
    sparse = to_sparse(module, min_sparsity=0.8)
    assert isinstance(sparse[0], CSRLinear) and isinstance(sparse[2], nn.Linear)
    assert sparse[0].weight.values().numel() == 16
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
    assert "nonzero=16" in repr(sparse)
    restored = pickle.loads(pickle.dumps(sparse))
    with torch.no_grad():
        torch.testing.assert_close(restored(_data()), module(_data()))


def test_a_bad_threshold_is_named():
    with pytest.raises(ValueError, match="min_sparsity"):
        to_sparse(nn.Linear(2, 2), min_sparsity=1.5)
