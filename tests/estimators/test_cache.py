"""The ``memory`` cache of the dense stage (issue #6)."""

import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_regression
from sklearn.model_selection import GridSearchCV

from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor
from sk_ecprune.estimators._cache import PRUNING_STAGE_PARAMETERS, DenseCacheWarning
from sk_ecprune.estimators._params import InvalidParameterError

FAST = dict(hidden_layer_sizes=(8, 8), max_epochs=3, finetune_epochs=2, lr=1e-2, random_state=0,
            batch_size=32)
ESTIMATORS = [PrunedMLPRegressor, PrunedMLPClassifier]


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=60, n_features=5, noise=0.1, random_state=0)
    return X, y / y.std()


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_blobs(n_samples=60, n_features=4, centers=3, random_state=0)
    return X, np.array(["ant", "bee", "cat"])[y]


@pytest.fixture(scope="module")
def plain_random(clf_data):
    """An uncached classifier fit with ``method="random"``."""
    return PrunedMLPClassifier(**FAST, method="random").fit(*clf_data)


def _data(Est, reg_data, clf_data):
    return reg_data if Est is PrunedMLPRegressor else clf_data


def _entries(path):
    """The cache entries (one ``output.pkl`` per stored dense network) under ``path``."""
    return sorted(path.rglob("output.pkl"))


def _outputs(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


def _assert_same_fit(a, b, X):
    """Bit for bit: for fits that ran the same computation (a cache hit against its miss)."""
    np.testing.assert_array_equal(_outputs(a, X), _outputs(b, X))
    state_a, state_b = a.net_.module_.state_dict(), b.net_.module_.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    assert a.history_dense_[:, "train_loss"] == b.history_dense_[:, "train_loss"]
    if len(a.history_finetune_):
        assert a.history_finetune_[:, "train_loss"] == b.history_finetune_[:, "train_loss"]
    assert a.loss_before_pruning_ == b.loss_before_pruning_
    assert a.loss_after_pruning_ == b.loss_after_pruning_


def _assert_equivalent_fit(a, b, X):
    """A cached fit against the uncached one: the same steps, compared up to rounding.

    The dense stage runs in another net (the cache's twin) and reaches the estimator through
    state dicts, so the two are not one computation; the tolerance is far below what a
    different batch order, a lost generator state or a skipped epoch changes (1e-2 here).
    """
    np.testing.assert_allclose(_outputs(a, X), _outputs(b, X), rtol=1e-5, atol=1e-6)
    state_a, state_b = a.net_.module_.state_dict(), b.net_.module_.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=1e-5, atol=1e-6)
        assert torch.equal(state_a[key] == 0, state_b[key] == 0), key  # same removed weights
    np.testing.assert_allclose(
        a.history_dense_[:, "train_loss"], b.history_dense_[:, "train_loss"], rtol=1e-5
    )
    if len(a.history_finetune_):
        np.testing.assert_allclose(
            a.history_finetune_[:, "train_loss"], b.history_finetune_[:, "train_loss"], rtol=1e-5
        )
    assert a.loss_before_pruning_ == pytest.approx(b.loss_before_pruning_, rel=1e-5)
    assert a.loss_after_pruning_ == pytest.approx(b.loss_after_pruning_, rel=1e-5)


# ------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("method", ["random", "ec"])
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_cached_fit_equals_the_uncached_fit_and_a_hit_its_miss(Est, method, reg_data, clf_data, tmp_path):
    # Fine-tuning shuffles with the net's generator: its state right after training is
    # restored from the entry. A hit is bit for bit its miss (the same computation).
    X, y = _data(Est, reg_data, clf_data)
    params = dict(FAST, method=method, prune_ratio=0.6, validation_fraction=0.25)
    plain = Est(**params).fit(X, y)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    miss = Est(**params, memory=str(tmp_path)).fit(X, y)
    assert len(_entries(tmp_path)) == 1
    hit = Est(**params, memory=str(tmp_path)).fit(X, y)
    assert len(_entries(tmp_path)) == 1
    torch.testing.assert_close(torch.get_rng_state(), torch_state, rtol=0, atol=0)
    assert all(np.array_equal(u, v) for u, v in zip(np.random.get_state(), np_state))
    _assert_equivalent_fit(plain, miss, X)
    _assert_equivalent_fit(plain, hit, X)
    _assert_same_fit(miss, hit, X)
    # the hit loaded the stored training (same epoch durations), it did not train again
    assert hit.history_dense_[:, "dur"] == miss.history_dense_[:, "dur"]
    assert hit.net_.optimizer_.state_dict()["param_groups"] == (
        plain.net_.optimizer_.state_dict()["param_groups"]
    )


def test_finetune_zero_keeps_the_dense_optimizer_state(reg_data, tmp_path):
    X, y = reg_data
    params = dict(FAST, prune_ratio=0.0, finetune_epochs=0)
    plain = PrunedMLPRegressor(**params).fit(X, y)
    PrunedMLPRegressor(**params, memory=str(tmp_path)).fit(X, y)
    hit = PrunedMLPRegressor(**params, memory=str(tmp_path)).fit(X, y)
    _assert_equivalent_fit(plain, hit, X)
    for state_a, state_b in zip(plain.net_.optimizer_.state.values(),
                                hit.net_.optimizer_.state.values()):
        for key in state_a:
            assert torch.equal(torch.as_tensor(state_a[key]), torch.as_tensor(state_b[key]))


# ----------------------------------------------------------------------------------- key
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_pruning_settings_share_one_entry(Est, reg_data, clf_data, tmp_path, capsys):
    X, y = _data(Est, reg_data, clf_data)
    base = Est(**FAST, memory=str(tmp_path))
    variants = [
        dict(prune_ratio=0.3),
        dict(prune_ratio=0.8, method="magnitude"),
        dict(scope="layer"),
        dict(finetune_epochs=0),
        dict(finetune_lr=1e-3),
        dict(hidden_layer_sizes=[8, 8]),  # the same network as (8, 8)
        dict(verbose=1),
    ]
    if Est is PrunedMLPClassifier:
        variants.append(dict(output_metric="fisher"))
    for change in variants:
        clone(base).set_params(**change).fit(X, y)
    assert len(_entries(tmp_path)) == 1
    assert "Dense network loaded from the cache (memory): 3 epochs" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change",
    [
        dict(lr=2e-2),
        dict(max_epochs=4),
        dict(batch_size=16),
        dict(activation="tanh"),
        dict(hidden_layer_sizes=(8, 4)),
        dict(optimizer="sgd"),
        dict(optimizer=torch.optim.RMSprop),
        dict(weight_decay=1e-3),
        dict(validation_fraction=0.2),
        dict(random_state=1),
        "X",
        "y",
    ],
    ids=str,
)
def test_dense_settings_and_data_make_new_entries(change, reg_data, tmp_path):
    X, y = reg_data
    base = PrunedMLPRegressor(**FAST, memory=str(tmp_path)).fit(X, y)
    if change == "X":
        X = X.copy()
        X[0, 0] += 1e-3
    elif change == "y":
        y = y.copy()
        y[0] += 1e-3
    changed = clone(base).set_params(**(change if isinstance(change, dict) else {}))
    changed.fit(X, y)
    assert len(_entries(tmp_path)) == 2
    plain = clone(changed).set_params(memory=None).fit(X, y)
    _assert_equivalent_fit(plain, changed, X)


def test_sample_weights_are_part_of_the_key(reg_data, tmp_path):
    X, y = reg_data
    weights = np.random.RandomState(0).uniform(0.5, 2, len(X))
    other = weights.copy()
    other[0] += 1e-3
    params = dict(FAST, validation_fraction=0.25, memory=str(tmp_path))
    miss = PrunedMLPRegressor(**params).fit(X, y, sample_weight=weights)
    assert len(_entries(tmp_path)) == 1
    hit = PrunedMLPRegressor(**params, prune_ratio=0.8).fit(X, y, sample_weight=weights)
    assert len(_entries(tmp_path)) == 1  # the same weights: one entry
    assert hit.history_dense_[:, "dur"] == miss.history_dense_[:, "dur"]
    for changed in (other, None, np.ones(len(X))):
        PrunedMLPRegressor(**params).fit(X, y, sample_weight=changed)
    assert len(_entries(tmp_path)) == 4  # other weights, none and ones: new entries
    plain = PrunedMLPRegressor(**{**params, "memory": None}).fit(X, y, sample_weight=weights)
    _assert_equivalent_fit(plain, miss, X)


def test_stopping_settings_are_in_the_key_only_when_they_act(reg_data, tmp_path):
    X, y = reg_data
    every_epoch = PrunedMLPRegressor(**FAST, n_iter_no_change=None, memory=str(tmp_path))
    for change in ({}, dict(tol=1e-2)):  # no stopping rule: tol does not act
        clone(every_epoch).set_params(**change).fit(X, y)
    assert len(_entries(tmp_path)) == 1
    base = clone(every_epoch).set_params(n_iter_no_change=10)  # the training-loss rule
    for change in ({}, dict(tol=1e-2), dict(n_iter_no_change=3)):
        clone(base).set_params(**change).fit(X, y)
    assert len(_entries(tmp_path)) == 4
    stopping = clone(base).set_params(early_stopping=True)
    stopping.fit(X, y)
    clone(stopping).set_params(validation_fraction=0.1).fit(X, y)  # what None means
    assert len(_entries(tmp_path)) == 5
    clone(stopping).set_params(tol=1e-2).fit(X, y)
    cached = clone(stopping).set_params(n_iter_no_change=1).fit(X, y)
    assert len(_entries(tmp_path)) == 7
    plain = clone(cached).set_params(memory=None).fit(X, y)
    _assert_equivalent_fit(plain, cached, X)
    assert plain.history_dense_[:, "valid_score"] == pytest.approx(
        cached.history_dense_[:, "valid_score"], rel=1e-5)


def test_every_parameter_is_classified():
    # A new constructor parameter must be placed on one side: in the key (it can change
    # the dense network), or in PRUNING_STAGE_PARAMETERS (it acts only afterwards).
    dense = {
        "hidden_layer_sizes", "activation", "max_epochs", "lr", "batch_size", "optimizer",
        "weight_decay", "validation_fraction", "device", "random_state",
        # the stopping rules act in the dense training too
        "early_stopping", "n_iter_no_change", "tol",
        # the network and the callbacks of every training stage
        "module", "callbacks",
    }
    for Est in ESTIMATORS:
        params = set(Est().get_params())
        unclassified = params - dense - PRUNING_STAGE_PARAMETERS
        assert not unclassified, f"{Est.__name__}: classify {sorted(unclassified)}"
        assert not dense & PRUNING_STAGE_PARAMETERS


def test_random_state_none_caches_nothing(reg_data, tmp_path):
    X, y = reg_data
    a = PrunedMLPRegressor(**{**FAST, "random_state": None}, memory=str(tmp_path)).fit(X, y)
    b = clone(a).fit(X, y)
    assert _entries(tmp_path) == []
    assert not np.array_equal(a.predict(X), b.predict(X))


def test_memory_accepts_a_joblib_memory_and_rejects_other_values(reg_data, tmp_path):
    X, y = reg_data
    memory = joblib.Memory(tmp_path, verbose=0)
    a = PrunedMLPRegressor(**FAST, memory=memory).fit(X, y)
    b = PrunedMLPRegressor(**FAST, memory=memory, prune_ratio=0.2).fit(X, y)
    assert len(_entries(tmp_path)) == 1
    assert b.history_dense_[:, "dur"] == a.history_dense_[:, "dur"]
    with pytest.raises(InvalidParameterError, match=r"'memory' .* must be None, a str or an "
                                                    r"object implementing 'cache'"):
        PrunedMLPRegressor(memory=3).fit(X, y)


def test_unhashable_settings_train_without_the_cache(reg_data, tmp_path):
    X, y = reg_data

    def optimizer(params, **kwargs):  # local function: cannot be pickled, hence hashed
        return torch.optim.Adam(params, **kwargs)

    with pytest.warns(DenseCacheWarning, match="cannot be hashed"):
        est = PrunedMLPRegressor(**FAST, optimizer=optimizer, memory=str(tmp_path)).fit(X, y)
    assert _entries(tmp_path) == []
    plain = clone(est).set_params(memory=None).fit(X, y)
    _assert_equivalent_fit(plain, est, X)


# ------------------------------------------------------------------------ damaged entries
def _garbage(path):
    path.write_bytes(b"\x00not a pickle" * 10)


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path):
    path.write_bytes(b"")


def _bit_flip_in_payload(path):
    # Still a valid pickle holding a valid-looking entry: only the checksum can tell.
    entry = joblib.load(path)
    payload = bytearray(entry["payload"])
    payload[len(payload) // 2] ^= 0x10
    entry["payload"] = bytes(payload)
    joblib.dump(entry, path)


def _wrong_object(path):
    joblib.dump({"format": 1, "payload": b"", "sha256": "0", "spec_hash": "0"}, path)


@pytest.mark.parametrize(
    "damage", [_garbage, _truncated, _empty, _bit_flip_in_payload, _wrong_object],
    ids=lambda f: f.__name__.strip("_"),
)
def test_a_damaged_entry_is_retrained_with_a_warning(damage, clf_data, plain_random, tmp_path):
    X, y = clf_data
    params = dict(FAST, method="random")
    plain = plain_random
    PrunedMLPClassifier(**params, memory=str(tmp_path)).fit(X, y)
    (entry,) = _entries(tmp_path)
    damage(entry)
    with pytest.warns(DenseCacheWarning, match=r"could not be used .* training it again and "
                                               r"replacing the entry"):
        est = PrunedMLPClassifier(**params, memory=str(tmp_path)).fit(X, y)
    _assert_equivalent_fit(plain, est, X)
    with warnings.catch_warnings():  # repaired: the next fit loads it silently
        warnings.simplefilter("error")
        again = PrunedMLPClassifier(**params, memory=str(tmp_path)).fit(X, y)
    _assert_equivalent_fit(plain, again, X)
    assert again.history_dense_[:, "dur"] == est.history_dense_[:, "dur"]


def test_an_entry_of_other_settings_is_not_used(reg_data, tmp_path):
    X, y = reg_data
    other = dict(FAST, lr=2e-2)
    PrunedMLPRegressor(**FAST, memory=str(tmp_path)).fit(X, y)
    (first,) = _entries(tmp_path)
    PrunedMLPRegressor(**other, memory=str(tmp_path)).fit(X, y)
    (second,) = set(_entries(tmp_path)) - {first}
    second.write_bytes(first.read_bytes())  # an intact entry, under the wrong key
    with pytest.warns(DenseCacheWarning, match="computed for other settings"):
        est = PrunedMLPRegressor(**other, memory=str(tmp_path)).fit(X, y)
    plain = PrunedMLPRegressor(**other).fit(X, y)
    _assert_equivalent_fit(plain, est, X)


# ------------------------------------------------------------------------------- search
def test_grid_search_with_memory_equals_the_search_without(clf_data, tmp_path):
    X, y = clf_data
    grid = {"prune_ratio": [0.0, 0.8], "method": ["ec", "magnitude"]}
    est = PrunedMLPClassifier(**FAST)
    plain = GridSearchCV(est, grid, cv=2).fit(X, y)
    cached = GridSearchCV(clone(est).set_params(memory=str(tmp_path)), grid, cv=2).fit(X, y)
    assert len(_entries(tmp_path)) == 3  # one dense network per fold, one for the refit
    # accuracies of well-separated blobs: robust to rounding, so equal
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_array_equal(plain.cv_results_[key], cached.cv_results_[key])
    assert plain.best_params_ == cached.best_params_
    np.testing.assert_allclose(plain.predict_proba(X), cached.predict_proba(X), rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cache_on_cuda(clf_data, tmp_path):
    X, y = clf_data
    params = dict(FAST, device="cuda", method="random", finetune_epochs=0)
    plain = PrunedMLPClassifier(**params).fit(X, y)
    miss = PrunedMLPClassifier(**params, memory=str(tmp_path)).fit(X, y)
    hit = PrunedMLPClassifier(**params, memory=str(tmp_path)).fit(X, y)
    _assert_same_fit(miss, hit, X)  # loading is exact
    assert next(hit.net_.module_.parameters()).is_cuda
    # training on the GPU is deterministic for these kernels, up to cuBLAS' choices
    np.testing.assert_allclose(plain.predict_proba(X), hit.predict_proba(X), rtol=1e-5)


# -------------------------------------------------- module=, callbacks=, nested parameters
class _Chain(torch.nn.Sequential):
    def __init__(self, n_features, n_outputs, width=6):
        super().__init__(torch.nn.Linear(n_features, width), torch.nn.Tanh(),
                         torch.nn.Linear(width, n_outputs))


def test_network_and_nested_parameters_are_in_the_key(reg_data, tmp_path, capsys):
    from skorch.callbacks import LRScheduler

    X, y = reg_data
    base = PrunedMLPRegressor(
        **FAST, memory=str(tmp_path), optimizer="sgd", optimizer__momentum=0.9,
        callbacks=[("lr", LRScheduler(policy="StepLR", step_size=1))],
    ).fit(X, y)
    for pruning_only in (dict(prune_ratio=0.8), dict(finetune_epochs=1)):
        clone(base).set_params(**pruning_only).fit(X, y)
    assert len(_entries(tmp_path)) == 1
    changes = [
        dict(optimizer__momentum=0.5),  # the optimizer of the dense training
        dict(callbacks__lr__step_size=2),  # a callback's parameter
        dict(callbacks=None),
        dict(module=_Chain),
        dict(module=_Chain, module__width=4),
    ]
    for n, change in enumerate(changes, 2):
        changed = clone(base).set_params(**change).fit(X, y)
        assert len(_entries(tmp_path)) == n, change
    hit = clone(changed).fit(X, y)
    assert len(_entries(tmp_path)) == len(changes) + 1
    _assert_same_fit(changed, hit, X)
    plain = clone(changed).set_params(memory=None).fit(X, y)
    _assert_equivalent_fit(plain, changed, X)


def test_module_instances_are_keyed_by_their_weights(reg_data, tmp_path):
    X, y = reg_data
    first, second = _Chain(5, 1), _Chain(5, 1)
    for module in (first, second, first):
        PrunedMLPRegressor(**FAST, module=module, memory=str(tmp_path)).fit(X, y)
    assert len(_entries(tmp_path)) == 2
