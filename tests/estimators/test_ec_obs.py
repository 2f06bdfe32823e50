"""method="ec_obs" in the estimators (issue #13): every schedule, scope and the cache."""

import numpy as np
import pytest
from sklearn.datasets import make_blobs, make_regression

from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor

FAST = dict(hidden_layer_sizes=(16, 12), max_epochs=3, finetune_epochs=2, lr=1e-2, batch_size=32,
            random_state=0, method="ec_obs")


@pytest.fixture(scope="module")
def data():
    X, y = make_regression(n_samples=120, n_features=6, noise=0.1, random_state=0)
    Xc, yc = make_blobs(n_samples=120, n_features=5, centers=3, random_state=0)
    return {PrunedMLPRegressor: (X, y / y.std()), PrunedMLPClassifier: (Xc, yc)}


@pytest.mark.parametrize("Est", [PrunedMLPRegressor, PrunedMLPClassifier])
@pytest.mark.parametrize("schedule", [dict(gradual=True), dict(gradual=False, prune_steps=1),
                                      dict(gradual=False, prune_steps=3, scope="layer"),
                                      dict(gradual=True, scope="magnitude_budget")])
def test_fits_to_the_exact_ratio_and_removed_weights_stay_zero(Est, schedule, data):
    X, y = data[Est]
    est = Est(prune_ratio=0.7, **FAST, **schedule).fit(X, y)
    n_weights = sum(W.size for W in est.coefs_)
    zeros = sum(int((W == 0).sum()) for W in est.coefs_)
    if schedule.get("scope") == "layer":
        assert zeros == sum(round(0.7 * W.size) for W in est.coefs_)
    else:
        assert zeros == round(0.7 * n_weights)
    assert est.sparsity_ == pytest.approx(zeros / n_weights)
    assert est.pruning_report_.method == "ec_obs"
    assert any(layer.weight_change > 0 for layer in est.pruning_report_.layers)
    assert np.isfinite(est.predict(X)).all()


def test_the_cache_serves_ec_obs_from_the_dense_stage_of_ec(data, tmp_path, capsys):
    X, y = data[PrunedMLPRegressor]
    PrunedMLPRegressor(prune_ratio=0.5, memory=str(tmp_path), **{**FAST, "method": "ec"}).fit(X, y)
    capsys.readouterr()
    second = PrunedMLPRegressor(prune_ratio=0.5, memory=str(tmp_path), verbose=1, **FAST)
    second.fit(X, y)
    assert "Dense network loaded from the cache (memory)" in capsys.readouterr().out
    assert second.pruning_report_.method == "ec_obs"


def test_a_method_instance_fits_clones_and_its_options_are_searched(data):
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    from sk_ecprune.engine import ECOBS, ECOBSUnits

    X, y = data[PrunedMLPRegressor]
    method = ECOBS(damp=0.0, selection="oneshot")
    est = PrunedMLPRegressor(prune_ratio=0.6, **{**FAST, "method": method}).fit(X, y)
    assert est.pruning_report_.method == repr(method)
    assert est.method is method and method.damp == 0.0  # fit leaves the parameter alone
    copy_ = clone(est)
    assert copy_.method is not method and copy_.get_params()["method__damp"] == 0.0
    search = GridSearchCV(est, {"method__damp": [0.0, 0.1]}, cv=2).fit(X, y)
    assert {p["method__damp"] for p in search.cv_results_["params"]} == {0.0, 0.1}
    with pytest.raises(ValueError, match="kind 'weight'"):
        PrunedMLPRegressor(granularity="neuron", **{**FAST, "method": method}).fit(X, y)
    units = PrunedMLPRegressor(granularity="neuron", prune_ratio=0.4,
                               **{**FAST, "method": ECOBSUnits()}).fit(X, y)
    assert units.pruning_report_.granularity == "neuron"
