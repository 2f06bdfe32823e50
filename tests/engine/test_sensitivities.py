"""The closed-form sensitivities of plain chains against the general autograd path."""

import pytest
import torch
from torch import nn

from sk_ecprune.engine import score_weights, sensitivities
from sk_ecprune.engine.recording import LayerRecorder, forward_recorded, linear_layers
from sk_ecprune.engine.sensitivities import chain_sensitivities, linear_chain, output_sensitivities
from sk_ecprune.engine import MLP

from .._reference import ResidualMLP


def _both_paths(module, X, metric, of="preactivations"):
    layers = [layer for _, layer in linear_layers(module)]
    chain = linear_chain(module, layers)
    assert chain is not None
    with LayerRecorder(layers) as recorder:
        output = forward_recorded(module, recorder, X)
        fast = chain_sensitivities(chain, recorder.outputs, output, metric, of)
        targets = recorder.inputs if of == "inputs" else recorder.outputs
        general = output_sensitivities(output, targets, metric)
    return fast, general


CHAINS = {
    "prelu": lambda: MLP(5, 4, (7, 6), "prelu"),
    "gelu": lambda: MLP(5, 4, (7, 6), "gelu"),
    "logistic": lambda: MLP(5, 4, (7,), "logistic"),
    # nested Sequential, dropout (identity in eval mode), stacked activations, an activation
    # before the first layer and one after the last
    "odd": lambda: nn.Sequential(
        nn.Tanh(), nn.Linear(5, 7), nn.Sequential(nn.LeakyReLU(0.1), nn.Dropout(0.5)),
        nn.Linear(7, 6), nn.SiLU(), nn.Softplus(), nn.Linear(6, 4), nn.Sigmoid()),
    "linear": lambda: MLP(5, 4, (), "relu"),
}


@pytest.mark.parametrize("of", ["preactivations", "inputs"])
@pytest.mark.parametrize("metric", ["euclidean", "fisher"])
@pytest.mark.parametrize("name", list(CHAINS))
def test_chain_sensitivities_equal_one_backward_pass_per_output(name, metric, of):
    # of="inputs": the sensitivity of each layer's input (a hidden unit's output), which
    # structured pruning needs
    torch.manual_seed(0)
    module = CHAINS[name]().double().eval()
    X = torch.randn(50, 5, dtype=torch.float64)
    fast, general = _both_paths(module, X, metric, of)
    for a, b in zip(fast, general):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_only_plain_chains_take_the_closed_form():
    residual = ResidualMLP(4, 6, 3)
    assert linear_chain(residual, [m for _, m in linear_layers(residual)]) is None
    odd = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 2))  # not elementwise
    assert linear_chain(odd, [m for _, m in linear_layers(odd)]) is None
    mlp = MLP(4, 2, (5,), "relu")
    layers = [m for _, m in linear_layers(mlp)]
    assert [group[0] for group in linear_chain(mlp, layers)] == layers


def test_a_jacobian_too_large_falls_back_to_autograd_with_equal_scores(monkeypatch):
    torch.manual_seed(1)
    module = MLP(6, 5, (9, 8), "prelu").double()
    X = torch.randn(64, 6, dtype=torch.float64)
    fast = score_weights(module, X, method="ec", output_metric="fisher")
    monkeypatch.setattr(sensitivities, "MAX_JACOBIAN_ELEMENTS", 10)
    calls = []
    original = sensitivities.chain_sensitivities

    def spy(*args, **kwargs):
        calls.append(original(*args, **kwargs))
        return calls[-1]

    monkeypatch.setattr(sensitivities, "chain_sensitivities", spy)
    slow = score_weights(module, X, method="ec", output_metric="fisher")
    assert calls and all(c is None for c in calls)  # the general path ran
    for a, b in zip(fast.scores + fast.bias_shifts, slow.scores + slow.bias_shifts):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


def test_large_batches_are_processed_in_chunks_with_equal_scores(monkeypatch):
    torch.manual_seed(2)
    module = MLP(6, 5, (9, 8), "tanh").double()
    X = torch.randn(100, 6, dtype=torch.float64)
    whole = score_weights(module, X, method="ec", output_metric="fisher")
    monkeypatch.setattr(sensitivities, "MAX_JACOBIAN_ELEMENTS", 7 * 5 * 9)  # 7 rows per chunk
    chunked = score_weights(module, X, method="ec", output_metric="fisher")
    for a, b in zip(whole.scores + whole.bias_shifts, chunked.scores + chunked.bias_shifts):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
