"""The user's own network: ``module=`` (class or instance, a trained one with
``max_epochs=0``), structured pruning, ``to_torch`` and ONNX where the chain allows it."""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_regression
from torch import nn

from sk_ecprune import prune_model
from sk_ecprune.engine import make_permanent
from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor
from sk_ecprune.estimators._params import InvalidParameterError

FAST = dict(max_epochs=3, finetune_epochs=2, lr=1e-2, random_state=0, batch_size=32)


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=80, n_features=5, noise=0.1, random_state=0)
    return X.astype(np.float32), (y / y.std()).astype(np.float32)


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_blobs(n_samples=90, n_features=4, centers=3, random_state=0)
    return X.astype(np.float32), y


class ResidualMLP(nn.Module):
    """Not a chain: the hidden layer's output is added to its input."""

    def __init__(self, n_features, n_outputs, width=12):
        super().__init__()
        self.inp = nn.Linear(n_features, width)
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, n_outputs)

    def forward(self, X):
        h = torch.relu(self.inp(X))
        return self.out(h + torch.relu(self.hidden(h)))


class DropoutMLP(nn.Sequential):
    """A chain with Dropout: compaction, neuron pruning and ONNX apply."""

    def __init__(self, n_features, n_outputs, width=16, p=0.1):
        super().__init__(nn.Linear(n_features, width), nn.ReLU(), nn.Dropout(p),
                         nn.Linear(width, width), nn.Tanh(), nn.Linear(width, n_outputs))


class TemperatureHead(nn.Module):
    """A custom output head: logits divided by a learned temperature."""

    def __init__(self, n_features, n_outputs):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU())
        self.head = nn.Linear(16, n_outputs)
        self.log_temperature = nn.Parameter(torch.zeros(()))

    def forward(self, X):
        return self.head(self.body(X)) / self.log_temperature.exp()


def _linears(est):
    return [m for m in est.net_.module_.modules() if isinstance(m, nn.Linear)]


# ------------------------------------------------------------------------ module classes
def test_residual_module_class(reg_data):
    X, y = reg_data
    reg = PrunedMLPRegressor(module=ResidualMLP, module__width=10, prune_ratio=0.6,
                             **FAST).fit(X, y)
    assert reg.module is ResidualMLP  # the parameter is untouched
    shapes = [tuple(m.weight.shape) for m in _linears(reg)]
    assert shapes == [(10, 5), (10, 10), (1, 10)]  # n_features, n_outputs filled in
    assert reg.sparsity_ == pytest.approx(0.6, abs=0.01)
    assert reg.hidden_layer_sizes_ == (10, 10)
    out = reg.net_.module_(torch.as_tensor(X)).detach().numpy().ravel()
    np.testing.assert_allclose(reg.predict(X), out, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not one.*net_.module_"):
        reg.to_torch()


def test_a_module_class_is_seeded_by_random_state(reg_data):
    X, y = reg_data
    a, b, c = (PrunedMLPRegressor(module=ResidualMLP, max_epochs=0, finetune_epochs=0,
                                  prune_ratio=0, random_state=seed).fit(X, y)
               for seed in (0, 0, 1))
    state = torch.get_rng_state()
    assert np.array_equal(a.coefs_[0], b.coefs_[0])
    assert not np.array_equal(a.coefs_[0], c.coefs_[0])
    assert torch.equal(state, torch.get_rng_state())  # global generator untouched since


def test_neuron_pruning_refuses_a_module_that_is_not_a_chain(reg_data):
    X, y = reg_data
    reg = PrunedMLPRegressor(module=ResidualMLP, granularity="neuron", method="ec", **FAST)
    with pytest.raises(ValueError, match="granularity='neuron'.*ResidualMLP.*granularity='weight'"):
        reg.fit(X, y)
    assert not hasattr(reg, "net_")  # refused before training: no fitted state


def test_dropout_chain_is_compacted_and_exported(clf_data):
    X, y = clf_data
    clf = PrunedMLPClassifier(module=DropoutMLP, module__p=0.2, granularity="neuron",
                              method="ec", prune_ratio=0.5, **FAST).fit(X, y)
    assert clf.hidden_layer_sizes_[0] < 16 or clf.hidden_layer_sizes_[1] < 16
    small = clf.to_torch()
    assert isinstance(small, nn.Sequential)
    assert any(isinstance(m, nn.Dropout) for m in small)
    with torch.no_grad():
        logits = small(torch.as_tensor(X)).double().numpy()
    proba = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X), proba / proba.sum(1, keepdims=True),
                               rtol=1e-4, atol=1e-6)
    onnxruntime = pytest.importorskip("onnxruntime")
    import sk_ecprune.onnx  # noqa: F401
    from skl2onnx import to_onnx

    onx = to_onnx(clf, X[:1], options={id(clf): {"zipmap": False}})
    session = onnxruntime.InferenceSession(onx.SerializeToString(),
                                           providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(None, {session.get_inputs()[0].name: X})
    np.testing.assert_array_equal(labels, clf.predict(X))
    np.testing.assert_allclose(probabilities, clf.predict_proba(X), rtol=1e-4, atol=1e-5)


def test_custom_head_classifier(clf_data):
    X, y = clf_data
    clf = PrunedMLPClassifier(module=TemperatureHead, prune_ratio=0.5, **FAST).fit(X, y)
    assert clf.sparsity_ == pytest.approx(0.5, abs=0.01)
    assert clf.predict_proba(X).shape == (90, 3)
    assert clf.score(X, y) > 0.6  # blobs are easy; the pruned net still separates them
    with pytest.raises(ValueError, match="TemperatureHead is not one"):
        clf.to_torch()


# -------------------------------------------------------------- instances, max_epochs=0
def _trained_elsewhere(X, y):
    """A plain torch network trained by a loop of its own (not by the package)."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(),
                           nn.Linear(16, 1))
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)[:, None]
    for _ in range(200):
        optimizer.zero_grad()
        loss = ((module(Xt) - yt) ** 2).mean()
        loss.backward()
        optimizer.step()
    return module.eval()


def test_trained_instance_is_pruned_without_dense_training(reg_data):
    X, y = reg_data
    trained = _trained_elsewhere(X, y)
    before = copy.deepcopy(trained.state_dict())
    reg = PrunedMLPRegressor(module=trained, max_epochs=0, finetune_epochs=0, method="ec",
                             prune_ratio=0.5, prune_steps=1, gradual=False,
                             scoring_samples=None, random_state=0).fit(X, y)
    assert len(reg.history_dense_) == 0 and reg.n_iter_ == 0
    for key, value in trained.state_dict().items():  # the parameter is never changed
        assert torch.equal(value, before[key])
    with torch.no_grad():
        dense_mse = float(((trained(torch.as_tensor(X)).ravel() - torch.as_tensor(y)) ** 2)
                          .mean())
    assert reg.loss_before_pruning_ == pytest.approx(dense_mse, rel=1e-5)
    # the engine on a copy of the same network, called directly, removes the same weights
    reference = copy.deepcopy(trained)
    prune_model(reference, X, y, ratio=0.5, method="ec", output_metric="euclidean")
    make_permanent(reference)
    for ours, theirs in zip(_linears(reg), [m for m in reference if isinstance(m, nn.Linear)]):
        np.testing.assert_array_equal(ours.weight.detach().numpy() == 0,
                                      theirs.weight.detach().numpy() == 0)
        np.testing.assert_allclose(ours.bias.detach().numpy(), theirs.bias.detach().numpy(),
                                   rtol=1e-4, atol=1e-5)
    assert reg.loss_ == reg.loss_after_pruning_  # no epoch: the pruned network's loss


def test_trained_instance_is_fine_tuned_and_cloned(reg_data):
    X, y = reg_data
    trained = _trained_elsewhere(X, y)
    reg = PrunedMLPRegressor(module=trained, max_epochs=0, finetune_epochs=3, lr=1e-3,
                             batch_size=32, prune_ratio=0.7, random_state=0)
    twin = clone(reg)
    assert twin.module is not trained  # clone deep-copies the instance
    assert torch.equal(twin.module[0].weight, trained[0].weight)
    reg.fit(X, y)
    assert len(reg.history_finetune_) == 3
    assert reg.sparsity_ == pytest.approx(0.7, abs=0.01)
    assert reg.loss_ < reg.loss_after_pruning_  # fine-tuning recovers some of the loss
    assert isinstance(reg.to_torch(), nn.Sequential)  # a Sequential is a chain
    restored = pickle.loads(pickle.dumps(reg))
    assert restored.net_.module is restored.net_.module_  # one module, pickled once
    np.testing.assert_array_equal(restored.predict(X), reg.predict(X))


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "params, match",
    [
        (dict(module="mlp"), "'module' parameter must be None, a torch.nn.Module subclass"),
        (dict(module__width=3), "module=None"),
        (dict(module=nn.Linear(5, 1), module__in_features=5), "instance of Linear"),
        (dict(module=ResidualMLP, module__depth=3), "could not be built"),
        (dict(module=nn.Linear(5, 2)), r"returned \(2, 2\).*\(batch, 1\)"),
        (dict(module=nn.Linear(4, 1)), "failed on a batch of X"),
    ],
    ids=["not-a-module", "options-without-class", "options-with-instance", "bad-option",
         "wrong-outputs", "wrong-inputs"],
)
def test_bad_module(params, match, reg_data):
    X, y = reg_data
    with pytest.raises((InvalidParameterError, TypeError, ValueError), match=match):
        PrunedMLPRegressor(**params, **FAST).fit(X, y)
