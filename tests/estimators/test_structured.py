"""granularity="neuron" and to_torch() in the estimators (issue #14)."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs, make_regression
from sklearn.model_selection import GridSearchCV

from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor
from sk_ecprune.estimators._params import InvalidParameterError

FAST = dict(hidden_layer_sizes=(16, 12), max_epochs=3, finetune_epochs=2, lr=1e-2, batch_size=32,
            random_state=0)
ESTIMATORS = [PrunedMLPRegressor, PrunedMLPClassifier]


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=120, n_features=6, n_targets=2, noise=0.1, random_state=0)
    return X, y / y.std(0)


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_blobs(n_samples=120, n_features=5, centers=4, random_state=0)
    return X, np.array(["a", "b", "c", "d"])[y]


def _data(Est, reg_data, clf_data):
    return reg_data if Est is PrunedMLPRegressor else clf_data


def _outputs(est, X):
    """What to_torch() must reproduce: predictions, or the log of the probabilities."""
    if isinstance(est, PrunedMLPClassifier):
        return np.log(est.predict_proba(X))
    return est.predict(X)


def _torch_outputs(est, module, X):
    with torch.no_grad():
        out = module(torch.as_tensor(X, dtype=torch.float32)).double()
    if isinstance(est, PrunedMLPClassifier):
        return torch.log_softmax(out, 1).numpy()
    return out.numpy()


@pytest.mark.parametrize("granularity", ["weight", "neuron"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_to_torch_is_a_standalone_module_with_the_estimators_outputs(
    Est, granularity, reg_data, clf_data
):
    X, y = _data(Est, reg_data, clf_data)
    est = Est(**FAST, prune_ratio=0.7, granularity=granularity).fit(X, y)
    module = est.to_torch()
    assert isinstance(module, torch.nn.Sequential) and not module.training
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in module.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())
    assert not any("mask" in name or "orig" in name for name in module.state_dict())
    np.testing.assert_allclose(_torch_outputs(est, module, X), _outputs(est, X),
                               rtol=1e-4, atol=1e-5)
    # a copy: changing it leaves the estimator alone
    with torch.no_grad():
        next(module.parameters()).zero_()
    np.testing.assert_allclose(_torch_outputs(est, est.to_torch(), X), _outputs(est, X),
                               rtol=1e-4, atol=1e-5)
    restored = pickle.loads(pickle.dumps(est.to_torch()))
    np.testing.assert_allclose(_torch_outputs(est, restored, X), _outputs(est, X),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_a_neuron_fit_runs_the_compacted_network(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    est = Est(**FAST, prune_ratio=0.6, granularity="neuron").fit(X, y)
    widths = est.hidden_layer_sizes_
    assert len(widths) == 2 and widths[0] < 16 and widths[1] <= 12 and min(widths) >= 1
    linears = [m for m in est.net_.module_.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears[:-1]] == list(widths)
    # the ratio counts weights, measured in the network of hidden_layer_sizes
    n_weights = X.shape[1] * 16 + 16 * 12 + 12 * linears[-1].out_features
    n_kept = sum(int((m.weight != 0).sum()) for m in linears)
    assert est.sparsity_ == pytest.approx(1 - n_kept / n_weights, abs=1e-9)
    assert 0.45 < est.sparsity_ <= 0.6
    dense = Est(**FAST, prune_ratio=0.0).fit(X, y)
    assert dense.hidden_layer_sizes_ == (16, 12)
    assert Est(**FAST, prune_ratio=0.6).fit(X, y).hidden_layer_sizes_ == (16, 12)  # weights


def test_a_compacted_net_keeps_training_and_pickles(clf_data):
    X, y = clf_data
    est = PrunedMLPClassifier(**FAST, prune_ratio=0.6, granularity="neuron").fit(X, y)
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.predict_proba(X), est.predict_proba(X))
    shapes = [p.shape for p in est.net_.module_.parameters()]
    codes = np.searchsorted(est.classes_, y).astype(np.int64)
    est.net_.partial_fit(X.astype(np.float32), codes, epochs=1)
    assert [p.shape for p in est.net_.module_.parameters()] == shapes
    assert np.isfinite(est.predict_proba(X)).all()


def test_a_search_over_granularity_compares_equal_budgets(reg_data):
    X, y = reg_data
    search = GridSearchCV(PrunedMLPRegressor(**FAST, prune_ratio=0.5),
                          {"granularity": ["weight", "neuron"]}, cv=2).fit(X, y)
    assert set(search.cv_results_["param_granularity"]) == {"weight", "neuron"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(method="nonlinear"), r"method='nonlinear' has no version that removes whole "
                                   r"units; with granularity='neuron' use one of \['ec'"),
        (dict(scope="layer"), r"granularity='neuron' ranks units over all hidden layers"),
        (dict(granularity="unit"), r"'granularity' parameter .* among \{'neuron', 'weight'\}"),
    ],
)
def test_invalid_neuron_settings_are_named(params, match, reg_data):
    params = {"granularity": "neuron", **params}
    with pytest.raises(InvalidParameterError, match=match):
        PrunedMLPRegressor(**FAST, **params).fit(*reg_data)


def test_to_torch_sparse_stores_the_sparsest_layers_as_csr():
    from sk_ecprune.engine import CSRLinear

    X = np.random.RandomState(0).randn(200, 100)  # wide inputs: the first layer stays wide
    y = X[:, :5].sum(1)
    est = PrunedMLPRegressor(**{**FAST, "hidden_layer_sizes": (32, 32)}, prune_ratio=0.95,
                             method="magnitude", scope="layer").fit(X, y)
    dense = est.to_torch()
    sparsest = [float((m.weight == 0).float().mean()) >= 0.9
                for m in dense.modules() if isinstance(m, torch.nn.Linear)]
    module = est.to_torch(sparse=True)
    layers = [m for m in module.modules() if isinstance(m, (torch.nn.Linear, CSRLinear))]
    assert any(sparsest) and [isinstance(m, CSRLinear) for m in layers] == sparsest
    with torch.no_grad():
        out = module(torch.as_tensor(X, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out.ravel(), est.predict(X), rtol=1e-4, atol=1e-5)
