"""A drop-in for scikit-learn's MLP (issue #15): early stopping, its attributes, sample weights.

The attributes are compared with those of scikit-learn's own ``MLPRegressor`` and
``MLPClassifier`` fitted side by side on the same tiny data (types, shapes, None cases).
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_blobs, make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.neural_network import MLPClassifier, MLPRegressor

from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor
from sk_ecprune.estimators._params import InvalidParameterError

FAST = dict(hidden_layer_sizes=(8, 8), max_epochs=4, finetune_epochs=3, lr=1e-2, random_state=0,
            batch_size=32)
ESTIMATORS = [PrunedMLPRegressor, PrunedMLPClassifier]
SKLEARN = {PrunedMLPRegressor: MLPRegressor, PrunedMLPClassifier: MLPClassifier}


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=80, n_features=5, noise=0.1, random_state=0)
    return X, y / y.std()


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_blobs(n_samples=90, n_features=4, centers=3, cluster_std=3.0, random_state=0)
    return X, np.array(["ant", "bee", "cat"])[y]


def _data(Est, reg_data, clf_data):
    return reg_data if Est is PrunedMLPRegressor else clf_data


def _outputs(est, X):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


def _sklearn_fit(Est, X, y, early_stopping):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SKLEARN[Est](hidden_layer_sizes=(8, 8), max_iter=5, random_state=0,
                            early_stopping=early_stopping).fit(X, y)


# ------------------------------------------------------------------ attributes, side by side
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize(
    "Est, task", [(PrunedMLPRegressor, "1d"), (PrunedMLPRegressor, "2d"),
                  (PrunedMLPClassifier, "binary"), (PrunedMLPClassifier, "multiclass")],
)
def test_attributes_follow_scikit_learns_mlp(Est, task, early_stopping, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    if task == "2d":
        y = np.column_stack([y, -y])
    elif task == "binary":
        X, y = X[y != "cat"], y[y != "cat"]
    ours = Est(**FAST, early_stopping=early_stopping).fit(X, y)
    theirs = _sklearn_fit(Est, X, y, early_stopping)
    binary = task == "binary"
    # layout: lists of arrays (n_in, n_out), one per linear layer
    assert ours.n_layers_ == theirs.n_layers_ == 4
    for name in ("coefs_", "intercepts_"):
        ours_list, theirs_list = getattr(ours, name), getattr(theirs, name)
        assert isinstance(ours_list, list) and len(ours_list) == len(theirs_list) == 3
        assert all(isinstance(a, np.ndarray) for a in ours_list)
        shapes = [a.shape for a in theirs_list]
        if binary:  # scikit-learn: one logistic unit; here one logit per class
            shapes[-1] = shapes[-1][:-1] + (2,)
        assert [a.shape for a in ours_list] == shapes, name
    assert ours.n_outputs_ == (2 if binary else theirs.n_outputs_)
    assert ours.n_outputs_ == ours.coefs_[-1].shape[1]
    assert ours.out_activation_ == ("softmax" if binary else theirs.out_activation_)
    # the training curve
    for est in (ours, theirs):
        assert isinstance(est.n_iter_, int) and est.n_iter_ == len(est.loss_curve_)
        assert isinstance(est.loss_curve_, list)
        assert all(isinstance(v, float) for v in est.loss_curve_)
        assert isinstance(est.loss_, float)
        if early_stopping:
            assert est.best_loss_ is None
            assert isinstance(est.validation_scores_, list)
            assert len(est.validation_scores_) == est.n_iter_
            assert est.best_validation_score_ == max(est.validation_scores_)
        else:
            assert isinstance(est.best_loss_, float)
            assert est.best_loss_ == min(est.loss_curve_)
            assert est.validation_scores_ is None and est.best_validation_score_ is None
    assert ours.loss_ == ours.loss_curve_[-1]
    assert ours.n_iter_ == len(ours.history_dense_) + len(ours.history_finetune_)
    assert len(ours.loss_curve_stages_) == ours.n_iter_


def test_the_validation_score_is_scikit_learns_score(clf_data, reg_data):
    # with a constant validation score the best one is that score; scores are accuracy
    # (classifier) or R^2 (regressor), both at most 1 and not a loss
    for Est in ESTIMATORS:
        X, y = _data(Est, reg_data, clf_data)
        est = Est(**{**FAST, "max_epochs": 12}, early_stopping=True).fit(X, y)
        scores = np.array(est.validation_scores_)
        assert (scores <= 1).all() and scores.max() > 0.3
        assert np.array_equal(scores, est.history_dense_[:, "valid_score"]
                              + est.history_finetune_[:, "valid_score"])
        if Est is PrunedMLPClassifier:  # accuracies of 9 validation rows
            assert np.allclose(scores * 9, np.round(scores * 9))


def test_coefs_and_intercepts_recompute_the_predictions(reg_data):
    X, y = reg_data
    reg = PrunedMLPRegressor(**FAST, activation="tanh", prune_ratio=0.6).fit(X, y)
    hidden = X
    for W, b in zip(reg.coefs_[:-1], reg.intercepts_[:-1]):
        hidden = np.tanh(hidden @ W + b)
    predicted = hidden @ reg.coefs_[-1] + reg.intercepts_[-1]
    np.testing.assert_allclose(predicted.ravel(), reg.predict(X), rtol=1e-4, atol=1e-5)
    n_zero = sum(int((W == 0).sum()) for W in reg.coefs_)
    assert n_zero == reg.pruning_report_.n_removed  # removed weights are zeros
    reg.coefs_[0][:] = 0  # copies: the network does not change
    np.testing.assert_allclose(predicted.ravel(), reg.predict(X), rtol=1e-4, atol=1e-5)


def test_predict_log_proba_is_the_log_of_predict_proba(clf_data):
    X, y = clf_data
    clf = PrunedMLPClassifier(**FAST).fit(X, y)
    log_proba = clf.predict_log_proba(X)
    assert log_proba.shape == (len(X), 3) and log_proba.dtype == np.float64
    np.testing.assert_allclose(log_proba, np.log(clf.predict_proba(X)), rtol=1e-6, atol=1e-8)
    far = clf.predict_log_proba(X * 1e3)  # saturated softmax: still finite
    assert np.isfinite(far).all()


def test_the_stage_of_every_epoch_is_named(reg_data):
    X, y = reg_data
    gradual = PrunedMLPRegressor(**{**FAST, "finetune_epochs": 5}).fit(X, y)
    # 5 epochs over 5 steps: one after each
    assert gradual.loss_curve_stages_ == ["dense"] * 4 + [
        f"fine-tuning after pruning step {t} of 5" for t in range(1, 6)]
    at_once = PrunedMLPRegressor(**FAST, gradual=False).fit(X, y)
    assert at_once.loss_curve_stages_ == ["dense"] * 4 + ["fine-tuning"] * 3
    dense = PrunedMLPRegressor(**FAST, prune_ratio=0).fit(X, y)
    assert dense.loss_curve_stages_ == ["dense"] * 4 + ["fine-tuning"] * 3


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_the_new_attributes_exist_only_once_fitted(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    est = Est(**FAST)
    names = ["coefs_", "intercepts_", "n_layers_", "n_outputs_", "out_activation_", "n_iter_",
             "loss_", "loss_curve_", "loss_curve_stages_", "best_loss_", "validation_scores_",
             "best_validation_score_"]
    assert not any(hasattr(est, name) for name in names)
    with pytest.raises(NotFittedError):
        est.coefs_  # noqa: B018
    est.fit(X, y)
    assert all(hasattr(est, name) for name in names)
    with pytest.raises(ValueError):
        est.fit(X, y, sample_weight=-np.ones(len(X)))  # a failed refit: nothing left
    assert not any(hasattr(est, name) for name in names)


# -------------------------------------------------------------------------- early stopping
@pytest.fixture(scope="module")
def noise_data():
    """Targets independent of the inputs: the validation loss soon stops improving."""
    rng = np.random.RandomState(0)
    return rng.normal(size=(200, 5)), rng.normal(size=200)


def test_early_stopping_stops_a_stalled_dense_training_and_restores_its_best(noise_data):
    X, y = noise_data
    est = PrunedMLPRegressor(hidden_layer_sizes=(32, 32), max_epochs=200, lr=2e-2,
                             prune_ratio=0, finetune_epochs=0, early_stopping=True,
                             n_iter_no_change=3, random_state=0).fit(X, y)
    history = est.history_dense_
    n_epochs = len(history)
    assert n_epochs < 200
    valid = np.array(history[:, "valid_loss"])
    best, threshold = None, np.inf  # the last epoch that improved by at least tol (relative)
    for epoch, loss in enumerate(valid):
        if loss < threshold:
            best, threshold = epoch, loss * (1 - est.tol)
    # stopped exactly n_iter_no_change epochs after it
    assert n_epochs == best + 1 + 3
    assert best + 1 < n_epochs  # the best is not the last epoch: a restore was needed
    # the returned network is the best epoch's: its validation loss is the best one
    net = est.net_
    _, valid_set = net.get_split_datasets(torch.as_tensor(X, dtype=torch.float32),
                                          torch.as_tensor(y, dtype=torch.float32)[:, None])
    Xv, yv = next(iter(net.get_iterator(valid_set)))
    with torch.no_grad():
        loss = float(net.get_loss(net.infer(Xv), yv))
    assert len(yv) == 20  # validation_fraction=None with early stopping: 10%
    assert loss == pytest.approx(valid[best], rel=1e-5)
    assert loss < valid[-1] - 1e-4


def test_early_stopping_restores_within_each_fine_tuning_segment_with_its_zeros(noise_data):
    X, y = noise_data
    est = PrunedMLPRegressor(hidden_layer_sizes=(32, 32), max_epochs=30, finetune_epochs=40,
                             lr=2e-2, prune_ratio=0.7, prune_steps=2, early_stopping=True,
                             n_iter_no_change=3, random_state=0).fit(X, y)
    stages = est.loss_curve_stages_
    segment = [s for s in stages if s.endswith("step 2 of 2")]
    assert 3 < len(segment) < 20  # the last segment stopped early
    stopper = dict(est.net_.callbacks_)["early_stopping"]
    assert stopper.best_epoch_ != len(est.history_finetune_)  # and restored an earlier epoch
    masks = dict(est.net_.callbacks_)["hold_removed_weights"].masks
    layers = dict(est.net_.module_.named_modules())
    for name, kept in masks.items():
        weight = layers[name].weight.detach()
        kept = torch.as_tensor(kept).to(weight.device)  # held as numpy (persistable)
        assert torch.equal(weight == 0, ~kept), name  # exactly its zeros
    assert est.sparsity_ == pytest.approx(0.7, abs=1e-3)


def _stopping_epoch(losses, n_iter_no_change, tol, relative=True):
    """Epochs a stage runs under the stopping rule, computed by hand from its losses: it
    stops after ``n_iter_no_change`` epochs in a row that do not beat the last improving
    epoch's loss by ``tol`` (times that loss when ``relative``)."""
    threshold, misses = np.inf, 0
    for epoch, loss in enumerate(losses, 1):
        if loss < threshold:
            threshold, misses = loss - (tol * loss if relative else tol), 0
        else:
            misses += 1
        if misses == n_iter_no_change:
            return epoch
    return len(losses)


def test_without_early_stopping_a_stalled_training_loss_stops_each_stage(noise_data):
    X, y = noise_data
    est = PrunedMLPRegressor(**{**FAST, "max_epochs": 60, "finetune_epochs": 40, "lr": 5e-2},
                             prune_ratio=0, n_iter_no_change=2, tol=0.05).fit(X, y)
    for history, cap in ((est.history_dense_, 60), (est.history_finetune_, 40)):
        losses = history[:, "train_loss"]
        assert len(losses) < cap  # the rule stopped the stage, and where it says
        assert len(losses) == _stopping_epoch(losses, 2, 0.05)
        assert "valid_loss" not in history[-1]  # no rows held out for it
    assert est.n_iter_ == len(est.loss_curve_) < 100


def test_tol_is_relative_so_small_losses_keep_training(noise_data, monkeypatch):
    # Targets of scale 1e-3 (MSE below 1e-3 after a few epochs, as a PDE surrogate's): an
    # absolute tol of 1e-4 soon counts no epoch as an improvement, a relative one does.
    from sk_ecprune.estimators import _build

    X, y = noise_data
    params = dict(FAST, max_epochs=40, finetune_epochs=0, prune_ratio=0, n_iter_no_change=2,
                  tol=1e-4)
    relative = PrunedMLPRegressor(**params).fit(X, 1e-3 * y)
    losses = relative.history_dense_[:, "train_loss"]
    assert len(losses) == _stopping_epoch(losses, 2, 1e-4) == 40
    monkeypatch.setattr(_build, "TOL_MODE", "abs")  # scikit-learn's rule, for comparison
    absolute = PrunedMLPRegressor(**params).fit(X, 1e-3 * y)
    stopped = absolute.history_dense_[:, "train_loss"]
    assert len(stopped) == _stopping_epoch(stopped, 2, 1e-4, relative=False) < 20
    # where the absolute rule stopped, the training loss was still far from where it went
    assert losses[len(stopped) - 1] > 2 * losses[-1]


@pytest.mark.parametrize("early_stopping", [False, True])
def test_n_iter_no_change_none_runs_every_epoch(early_stopping, noise_data):
    X, y = noise_data
    est = PrunedMLPRegressor(**{**FAST, "max_epochs": 12}, validation_fraction=0.2, tol=10.0,
                             n_iter_no_change=None, early_stopping=early_stopping).fit(X, y)
    assert len(est.history_dense_) == 12 and len(est.history_finetune_) == 3
    assert ("valid_score" in est.history_dense_[-1]) == early_stopping


@pytest.mark.parametrize("n_rows, params, batches", [
    (90, {}, [90]),  # min(200, n)
    (90, dict(early_stopping=True), [81]),  # the rows left for training
    (330, {}, [200, 130]),
    (330, dict(batch_size=100), [100, 100, 100, 30]),
])
def test_batch_size_auto_is_scikit_learns(n_rows, params, batches):
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(n_rows, 3)), rng.normal(size=n_rows)
    settings = {**FAST, "max_epochs": 1, "finetune_epochs": 0}
    del settings["batch_size"]
    est = PrunedMLPRegressor(**settings, prune_ratio=0, **params)
    assert est.get_params()["batch_size"] == params.get("batch_size", "auto")
    est.fit(X, y)
    assert est.history_dense_[0, "batches", :, "train_batch_size"] == batches


def test_early_stopping_splits_off_a_tenth_unless_told(clf_data):
    X, y = clf_data
    for fraction, n_train in ((None, 81), (0.3, 63)):
        clf = PrunedMLPClassifier(**FAST, early_stopping=True,
                                  validation_fraction=fraction).fit(X, y)
        assert sum(clf.history_dense_[0, "batches", :, "train_batch_size"]) == n_train


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(n_iter_no_change=0), r"'n_iter_no_change' .* None or an int in the range \[1, "),
        (dict(n_iter_no_change=2.5), r"'n_iter_no_change' .* None or an int in the range \[1, "),
        (dict(tol=float("nan")), r"'tol' .* a float in the range \[0.0, inf\)"),
        (dict(batch_size="full"), r"'batch_size' .* a str among \{'auto'\} or an int in"),
        (dict(tol=-1.0), r"'tol' .* a float in the range \[0.0, inf\)"),
        (dict(early_stopping="yes"), r"'early_stopping' .* must be a bool"),
    ],
)
def test_early_stopping_parameters_are_checked(params, match, reg_data):
    with pytest.raises(InvalidParameterError, match=match):
        PrunedMLPRegressor(**{**FAST, **params}).fit(*reg_data)


def test_a_validation_set_below_two_rows_is_refused(reg_data):
    X, y = reg_data
    with pytest.raises(ValueError, match="validation set is too small.*1 rows"):
        PrunedMLPRegressor(**FAST, early_stopping=True).fit(X[:10], y[:10])


# -------------------------------------------------------------------------- sample weights
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_uniform_weights_give_the_unweighted_fit(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    params = dict(FAST, validation_fraction=0.2)
    plain = Est(**params).fit(X, y)
    for weights in (np.ones(len(X)), np.full(len(X), 3.0), 3.0):
        weighted = Est(**params).fit(X, y, sample_weight=weights)
        np.testing.assert_allclose(_outputs(weighted, X), _outputs(plain, X), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(weighted.loss_curve_, plain.loss_curve_, rtol=1e-6)
        np.testing.assert_allclose(weighted.history_dense_[:, "valid_loss"],
                                   plain.history_dense_[:, "valid_loss"], rtol=1e-6)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_integer_weights_equal_repeated_rows_in_one_batch(Est, reg_data, clf_data):
    # With every row in one batch the weighted loss is the loss of the repeated rows, and
    # EC's statistics too: the two fits differ by rounding only.
    X, y = _data(Est, reg_data, clf_data)
    weights = np.random.RandomState(1).randint(0, 4, len(X))
    X_rep, y_rep = np.repeat(X, weights, axis=0), np.repeat(y, weights)
    params = dict(FAST, batch_size=1000, max_epochs=10, lr=3e-2)
    weighted = Est(**params).fit(X, y, sample_weight=weights)
    repeated = Est(**params).fit(X_rep, y_rep)
    plain = Est(**params).fit(X, y)
    np.testing.assert_allclose(_outputs(weighted, X), _outputs(repeated, X), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-5)
    assert np.abs(_outputs(weighted, X) - _outputs(plain, X)).max() > 1e-3  # weights count


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_rows_of_zero_weight_are_ignored(Est, reg_data, clf_data):
    # changing the inputs and targets of zero-weight rows changes nothing (in mini-batches
    # too: they still take their places in the batches), in training, validation and
    # pruning; the classifier's labels stay, since its validation split is stratified
    X, y = _data(Est, reg_data, clf_data)
    weights = np.where(np.arange(len(X)) % 4 == 0, 0.0, 1.0)
    X2, y2 = X.copy(), y.copy()
    dropped = weights == 0
    X2[dropped] = np.random.RandomState(2).normal(size=X2[dropped].shape) * 5
    if Est is PrunedMLPRegressor:
        y2[dropped] = y[::-1][dropped]
    params = dict(FAST, validation_fraction=0.25, method="ec")
    a = Est(**params).fit(X, y, sample_weight=weights)
    b = Est(**params).fit(X2, y2, sample_weight=weights)
    np.testing.assert_allclose(_outputs(a, X), _outputs(b, X), rtol=1e-5, atol=1e-5)
    for key in ("train_loss", "valid_loss"):
        np.testing.assert_allclose(a.history_finetune_[:, key], b.history_finetune_[:, key],
                                   rtol=1e-5)
    plain = Est(**params).fit(X2, y2)  # the same data unweighted: a different fit
    assert np.abs(_outputs(plain, X) - _outputs(b, X)).max() > 1e-3


def test_the_pruning_scores_the_rows_with_their_weights(reg_data, monkeypatch):
    from sk_ecprune.engine import SCORERS

    seen = []

    def recording(module, layers, data, **kwargs):  # what the engine hands a method
        seen.append((data.X.clone(), None if data.weights is None else data.weights.clone()))
        return SCORERS["magnitude"]().importance(module, layers, data, **kwargs)

    monkeypatch.setitem(SCORERS, "recording", recording)
    X, y = reg_data
    weights = np.random.RandomState(3).uniform(0, 3, len(X))
    params = dict(FAST, method="recording", prune_steps=2, gradual=False)
    PrunedMLPRegressor(**params, scoring_samples=None).fit(X, y, sample_weight=weights)
    assert len(seen) == 2  # one call per step, all rows with their weights
    normalised = weights / weights.mean()  # only ratios matter: scaled to mean 1
    for X_scored, w_scored in seen:
        np.testing.assert_allclose(X_scored.numpy(), X, rtol=1e-6)
        np.testing.assert_allclose(w_scored.numpy(), normalised, rtol=1e-6)
    seen.clear()
    PrunedMLPRegressor(**params, scoring_samples=30).fit(X, y, sample_weight=weights)
    X_scored, w_scored = seen[0]
    rows = [int(np.argmin(np.abs(X - row.numpy()).sum(1))) for row in X_scored]
    assert len(set(rows)) == 30
    np.testing.assert_allclose(w_scored.numpy(), normalised[rows], rtol=1e-6)  # their rows
    seen.clear()
    PrunedMLPRegressor(**params).fit(X, y)
    assert seen[0][1] is None


@pytest.mark.parametrize(
    "weights, error, match",
    [
        (-np.ones(80), ValueError, "Negative values in data passed to sample_weight"),
        (np.full(80, np.nan), ValueError, "Input sample_weight contains NaN"),
        (np.full(80, np.inf), ValueError, "Input sample_weight contains infinity"),
        (np.ones(79), ValueError, r"sample_weight.shape == \(79,\), expected \(80,\)"),
        (np.ones((80, 2)), ValueError, r"sample_weight.shape == \(80, 2\), expected \(80,\)"),
        (np.zeros(80), ValueError, "Sample weights must contain at least one non-zero number"),
        (np.full(80, "a"), ValueError, "could not convert string to float"),
    ],
)
def test_bad_weights_raise_and_leave_nothing_fitted(weights, error, match, reg_data):
    X, y = reg_data
    est = PrunedMLPRegressor(**FAST).fit(X, y)
    with pytest.raises(error, match=match):
        est.fit(X, y, sample_weight=weights)
    assert not hasattr(est, "net_")


def test_weights_that_keep_one_class_are_refused(clf_data):
    X, y = clf_data
    with pytest.raises(ValueError, match="at least 2 classes with a positive sample_weight; "
                                         "only class 'bee'"):
        PrunedMLPClassifier(**FAST).fit(X, y, sample_weight=(y == "bee").astype(float))


def test_the_callers_weights_and_data_are_not_modified(clf_data):
    X, y = clf_data
    for weights in (np.linspace(0, 2, len(X)), np.linspace(0, 2, len(X)).astype(np.float32)):
        before = weights.copy()
        PrunedMLPClassifier(**FAST, validation_fraction=0.2).fit(X, y, sample_weight=weights)
        np.testing.assert_array_equal(weights, before)


def test_weights_are_accepted_as_lists_and_series(reg_data):
    import pandas as pd

    X, y = reg_data
    weights = np.random.RandomState(4).uniform(0.5, 2, len(X))
    reference = PrunedMLPRegressor(**FAST).fit(X, y, sample_weight=weights).predict(X)
    for form in (list(weights), pd.Series(weights)):
        predicted = PrunedMLPRegressor(**FAST).fit(X, y, sample_weight=form).predict(X)
        np.testing.assert_allclose(predicted, reference, rtol=1e-6, atol=1e-7)


def test_no_weights_take_the_unweighted_path(reg_data, monkeypatch):
    # sample_weight=None keeps the previous fit bit for bit: the net is fitted on the bare
    # tensor and skorch's own loss, never the weighted one (checked against the previous
    # commit on one machine when the weights came in)
    from sk_ecprune.estimators import _net

    X, y = reg_data
    omitted = PrunedMLPRegressor(**FAST, validation_fraction=0.2).fit(X, y)
    calls = []
    original = _net.PrunedNetMixin.row_losses
    monkeypatch.setattr(_net.PrunedNetMixin, "row_losses",
                        lambda self, *a: calls.append(1) or original(self, *a))
    none = PrunedMLPRegressor(**FAST, validation_fraction=0.2).fit(X, y, sample_weight=None)
    assert calls == []
    np.testing.assert_array_equal(none.predict(X), omitted.predict(X))  # one computation twice
    assert none.loss_curve_ == omitted.loss_curve_
    PrunedMLPRegressor(**FAST).fit(X, y, sample_weight=np.ones(len(X)))
    assert calls  # (the spy does see weighted fits)


def test_the_migration_tables_optimizer_recipes_run(reg_data):
    # README, "Coming from scikit-learn's MLP": momentum, Adam's betas and torch's L-BFGS
    import functools

    X, y = reg_data
    recipes = [
        (functools.partial(torch.optim.SGD, momentum=0.9, nesterov=True),
         dict(momentum=0.9, nesterov=True, weight_decay=1e-4)),
        (functools.partial(torch.optim.Adam, betas=(0.8, 0.99), eps=1e-7),
         dict(betas=(0.8, 0.99), eps=1e-7, weight_decay=1e-4)),
        (torch.optim.LBFGS, dict(lr=1e-2)),
    ]
    for optimizer, expected in recipes:
        weight_decay = 1e-4 if "weight_decay" in expected else 0.0
        est = PrunedMLPRegressor(**{**FAST, "batch_size": len(X)}, optimizer=optimizer,
                                 weight_decay=weight_decay)  # L-BFGS: one batch, full-batch
        est.fit(X, y)
        group = est.net_.optimizer_.param_groups[0]
        assert {key: group[key] for key in expected} == expected
        assert est.loss_curve_[3] < est.loss_curve_[0]  # it trains
