"""Quantisation in the estimators' fit: ``quantize_bits``, ``quantize_method``,
``quantization_``, ``model_bytes_``, and a search over bit widths with the dense cache."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_regression
from sklearn.model_selection import GridSearchCV

from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor
from sk_ecprune.estimators._params import InvalidParameterError

FAST = dict(hidden_layer_sizes=(8, 8), max_epochs=3, finetune_epochs=2, lr=1e-2, random_state=0,
            batch_size=32)
METHODS = ["ec_obs", "ec", "gptq", "rtn"]


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=80, n_features=5, noise=0.1, random_state=0)
    return X, y / y.std()


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_blobs(n_samples=80, n_features=4, centers=3, random_state=0)
    return X, np.array(["ant", "bee", "cat"])[y]


def _check_on_grid(est, bits):
    """Every layer: weight == codes * scale exactly, codes within +-qmax, int8/float32."""
    qmax = 2 ** (bits - 1) - 1
    assert len(est.quantization_) == len(est.coefs_)
    for layer, coef in zip(est.quantization_, est.coefs_):
        assert layer.bits == bits and layer.codes.dtype == np.int8
        assert layer.scales.dtype == np.float32 and (layer.scales > 0).all()
        assert layer.codes.shape == coef.T.shape
        assert np.abs(layer.codes.astype(int)).max() <= qmax
        rebuilt = layer.codes.astype(np.float32) * layer.scales[:, None]
        np.testing.assert_array_equal(rebuilt, coef.T)
        # at most 2^b - 1 distinct values per row, zero included
        assert max(len(np.unique(row)) for row in coef.T) <= 2 * qmax + 1


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weights_lie_on_their_grids_and_pruned_zeros_stay(reg_data, bits, method):
    X, y = reg_data
    plain = PrunedMLPRegressor(**FAST, prune_ratio=0.6).fit(X, y)
    quant = clone(plain).set_params(quantize_bits=bits, quantize_method=method).fit(X, y)
    _check_on_grid(quant, bits)
    assert all(layer.method == method for layer in quant.quantization_)
    # the same fit up to the last stage: its zeros are still zeros
    for before, after in zip(plain.coefs_, quant.coefs_):
        assert (after[before == 0] == 0).all()
    assert quant.sparsity_ == plain.sparsity_  # counted before the rounding
    assert quant.quantization_time_ > 0 and plain.quantization_time_ == 0.0
    assert plain.quantization_ is None


def test_eight_bits_barely_change_the_predictions(reg_data):
    X, y = reg_data
    plain = PrunedMLPRegressor(**FAST, prune_ratio=0.5).fit(X, y)
    quant = clone(plain).set_params(quantize_bits=8).fit(X, y)
    change = np.mean((quant.predict(X) - plain.predict(X)) ** 2)
    assert 0 < change < 1e-3 * np.var(plain.predict(X))


def test_neuron_granularity_quantises_the_compacted_layers(clf_data):
    X, y = clf_data
    clf = PrunedMLPClassifier(
        **FAST, prune_ratio=0.6, granularity="neuron", quantize_bits=4
    ).fit(X, y)
    _check_on_grid(clf, 4)
    widths = tuple(layer.codes.shape[0] for layer in clf.quantization_[:-1])
    assert widths == clf.hidden_layer_sizes_ != FAST["hidden_layer_sizes"]
    plain = clone(clf).set_params(quantize_bits=None).fit(X, y)
    assert clf.hidden_layer_sizes_ == plain.hidden_layer_sizes_  # the same network, rounded
    assert clf.score(X, y) >= plain.score(X, y) - 0.05  # blobs: 4 bits lose little


def test_quantised_model_pickles(clf_data):
    X, y = clf_data
    clf = PrunedMLPClassifier(**FAST, quantize_bits=3).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    for a, b in zip(again.quantization_, clf.quantization_):
        np.testing.assert_array_equal(a.codes, b.codes)
        np.testing.assert_array_equal(a.scales, b.scales)


@pytest.mark.parametrize("Est", [PrunedMLPRegressor, PrunedMLPClassifier])
@pytest.mark.parametrize(("name", "value", "match"), [
    ("quantize_bits", 1, "quantize_bits"),
    ("quantize_bits", 9, "quantize_bits"),
    ("quantize_bits", 4.0, "quantize_bits"),
    ("quantize_bits", True, "quantize_bits"),
    ("quantize_method", "nearest", "quantize_method"),
])
def test_bad_quantisation_parameters_are_named(reg_data, Est, name, value, match):
    X, y = reg_data
    if Est is PrunedMLPClassifier:
        y = (y > 0).astype(int)
    with pytest.raises(InvalidParameterError, match=match):
        Est(**FAST, **{name: value}).fit(X, y)


def test_model_bytes_is_defined_for_float_models_too(reg_data):
    pytest.importorskip("skl2onnx")
    X, y = reg_data
    # wide enough for the weights, not the graph, to make most of the file
    plain = PrunedMLPRegressor(**{**FAST, "hidden_layer_sizes": (32, 32)}, prune_ratio=0.0)
    plain.fit(X, y)
    quant = clone(plain).set_params(quantize_bits=4).fit(X, y)
    assert isinstance(plain.model_bytes_, int) and 0 < quant.model_bytes_ < plain.model_bytes_


def test_model_bytes_is_none_without_skl2onnx(reg_data, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "skl2onnx", None)  # as if not installed
    reg = PrunedMLPRegressor(**FAST).fit(*reg_data)
    assert reg.model_bytes_ is None


def _entries(path):
    """The cache entries (one ``output.pkl`` per stored dense network) under ``path``."""
    return sorted(path.rglob("output.pkl"))


def test_search_over_bits_with_memory_gives_the_uncached_scores(clf_data, tmp_path):
    X, y = clf_data
    grid = {"prune_ratio": [0.0, 0.7], "quantize_bits": [None, 2, 4]}
    est = PrunedMLPClassifier(**FAST)
    plain = GridSearchCV(est, grid, cv=2).fit(X, y)
    cached = GridSearchCV(clone(est).set_params(memory=str(tmp_path)), grid, cv=2).fit(X, y)
    assert len(_entries(tmp_path)) == 3  # one dense network per fold, one for the refit
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_array_equal(plain.cv_results_[key], cached.cv_results_[key])
    assert plain.best_params_ == cached.best_params_
    np.testing.assert_allclose(plain.predict_proba(X), cached.predict_proba(X), rtol=1e-5)


def test_readme_refit_picks_the_smallest_model_within_tolerance(clf_data):
    # README's pattern: model_bytes_ as a second scorer, refit=callable on cv_results_.
    pytest.importorskip("skl2onnx")
    X, y = clf_data

    def neg_model_bytes(estimator, X, y):
        return -estimator.model_bytes_

    def smallest_within(tolerance):
        def refit(cv_results):
            score = cv_results["mean_test_accuracy"]
            candidates = np.flatnonzero(score >= score.max() - tolerance)
            return candidates[np.argmax(cv_results["mean_test_bytes"][candidates])]
        return refit

    grid = {"quantize_bits": [None, 8, 3]}
    search = GridSearchCV(
        PrunedMLPClassifier(**{**FAST, "hidden_layer_sizes": (32, 32)}), grid, cv=2,
        scoring={"accuracy": "accuracy", "bytes": neg_model_bytes},
        refit=smallest_within(0.05),
    ).fit(X, y)
    results = search.cv_results_
    chosen = search.best_index_
    assert results["mean_test_accuracy"][chosen] >= results["mean_test_accuracy"].max() - 0.05
    within = results["mean_test_accuracy"] >= results["mean_test_accuracy"].max() - 0.05
    assert -results["mean_test_bytes"][chosen] == min(-results["mean_test_bytes"][within])
    assert search.best_estimator_.quantize_bits == search.best_params_["quantize_bits"]
