"""skorch's extension points on the estimators: ``callbacks=`` and nested parameters."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_regression
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV
from skorch.callbacks import (
    Callback,
    EarlyStopping,
    EpochScoring,
    GradientNormClipping,
    LRScheduler,
)

from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor
from sk_ecprune.estimators import _skorch_internals as internals
from sk_ecprune.estimators._params import InvalidParameterError

FAST = dict(hidden_layer_sizes=(8, 8), max_epochs=3, finetune_epochs=2, lr=1e-2, batch_size=32,
            random_state=0)


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=80, n_features=5, noise=0.1, random_state=0)
    return X.astype(np.float32), (y / y.std()).astype(np.float32)


class RegrowWeights(Callback):
    """A careless callback: sets every weight to 1 after each training batch."""

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            with torch.no_grad():
                for module in net.module_.modules():
                    if isinstance(module, torch.nn.Linear):
                        module.weight.fill_(1.0)


# ------------------------------------------------------------------------------ callbacks
def test_lr_scheduler_in_every_stage_and_its_nested_parameter(reg_data):
    X, y = reg_data
    lr = 0.1
    reg = PrunedMLPRegressor(
        **{**FAST, "lr": lr, "max_epochs": 3, "finetune_epochs": 3}, optimizer="sgd",
        prune_steps=1, callbacks=[("lr", LRScheduler(policy="StepLR", step_size=1, gamma=0.5))],
    ).fit(X, y)
    # skorch records the learning rate of each epoch; the fine-tuning optimizer is new
    assert reg.history_dense_[:, "event_lr"] == pytest.approx([lr, lr / 2, lr / 4])
    assert reg.history_finetune_[:, "event_lr"] == pytest.approx([lr, lr / 2, lr / 4])
    reg.set_params(callbacks__lr__gamma=0.1).fit(X, y)
    assert reg.history_dense_[:, "event_lr"] == pytest.approx([lr, lr / 10, lr / 100])
    assert reg.callbacks[0][1].kwargs == {"step_size": 1, "gamma": 0.5}  # never changed


def test_epoch_scoring_in_every_stage(reg_data):
    X, y = reg_data
    scoring = EpochScoring("r2", on_train=True, name="train_r2", lower_is_better=False,
                           use_caching=False)
    reg = PrunedMLPRegressor(**FAST, callbacks=[scoring]).fit(X, y)
    assert len(reg.history_dense_[:, "train_r2"]) == 3
    assert len(reg.history_finetune_[:, "train_r2"]) == 2
    # the last epoch's score is the fitted network's R² on the training data
    assert reg.history_finetune_[-1, "train_r2"] == pytest.approx(
        r2_score(y, reg.predict(X)), rel=1e-4)
    assert not hasattr(scoring, "best_score_")  # the user's instance was copied, not used


@pytest.mark.parametrize("shortcuts", [True, False], ids=["shortcuts", "skorch-loop"])
def test_gradient_norm_clipping(reg_data, shortcuts, monkeypatch):
    # both training loops call the callbacks' gradient hook (the shortcuts skip it only
    # when nothing listens)
    monkeypatch.setattr(internals, "ENABLED", shortcuts)
    X, y = reg_data
    start = PrunedMLPRegressor(**{**FAST, "max_epochs": 0, "finetune_epochs": 0},
                               prune_ratio=0).fit(X, y)  # the initial weights
    params = dict(FAST, optimizer="sgd", prune_ratio=0, weight_decay=0.0)  # no L2 step
    params["finetune_epochs"] = 0
    free = PrunedMLPRegressor(**params).fit(X, y)
    clipped = PrunedMLPRegressor(**params, callbacks=[
        GradientNormClipping(gradient_clip_value=1e-8)]).fit(X, y)
    # SGD moves each weight by at most lr * |gradient| <= 1e-2 * 1e-8 per step
    for w0, w_free, w_clipped in zip(start.coefs_, free.coefs_, clipped.coefs_):
        assert np.abs(w_clipped - w0).max() < 1e-6
        assert np.abs(w_free - w0).max() > 1e-3


@pytest.mark.parametrize("shortcuts", [True, False], ids=["shortcuts", "skorch-loop"])
def test_removed_weights_stay_zero_whatever_the_user_callbacks_do(reg_data, shortcuts,
                                                                 monkeypatch):
    monkeypatch.setattr(internals, "ENABLED", shortcuts)
    X, y = reg_data
    reg = PrunedMLPRegressor(**FAST, prune_ratio=0.5, callbacks=[RegrowWeights()]).fit(X, y)
    assert reg.sparsity_ == pytest.approx(0.5, abs=0.01)
    assert [name for name, _ in reg.net_.callbacks_][-1] == "hold_removed_weights"
    kept = sum(int((w != 0).sum()) for w in reg.coefs_)
    ones = sum(int((w == 1).sum()) for w in reg.coefs_)
    assert ones == kept  # the user's callback ran; the hold ran after it
    assert pickle.loads(pickle.dumps(reg)).predict(X) == pytest.approx(reg.predict(X))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(callbacks=LRScheduler()), "must be None or a list"),
        (dict(callbacks=["lr"]), "not a skorch Callback"),
        (dict(callbacks=[("hold_removed_weights", RegrowWeights())]), "package's own"),
        (dict(callbacks=[("stop_on_train_loss", RegrowWeights())]), "package's own"),
        (dict(callbacks=[RegrowWeights(), RegrowWeights()]), "two callbacks are named"),
        (dict(callbacks=[EarlyStopping()]), "early_stopping=True"),
        (dict(callbacks__hold_removed_weights__masks=None), "package's own"),
        (dict(callbacks=[("lr", LRScheduler())], callbacks__lrs__gamma=0.1),
         "no callback named 'lrs'"),
        (dict(optimizer__momentum=0.9), "Adam takes no such argument"),
    ],
    ids=["not-a-list", "not-a-callback", "reserved-name", "reserved-stopping-name", "duplicate",
         "skorch-early-stopping",
         "package-callback-param", "unknown-callback-param", "optimizer-argument"],
)
def test_bad_callbacks_and_nested_parameters(params, match, reg_data):
    X, y = reg_data
    reg = PrunedMLPRegressor(**FAST, **params)
    with pytest.raises(InvalidParameterError, match=match):
        reg.fit(X, y)
    assert not hasattr(reg, "net_")


# ---------------------------------------------------------------------- nested parameters
def test_nested_parameters_get_set_clone(reg_data):
    X, y = reg_data
    reg = PrunedMLPRegressor(**FAST, optimizer="sgd", optimizer__momentum=0.9)
    assert reg.get_params()["optimizer__momentum"] == 0.9
    assert clone(reg).get_params()["optimizer__momentum"] == 0.9
    assert "optimizer__momentum=0.9" in repr(reg)
    reg.set_params(optimizer__momentum=0.5, optimizer__nesterov=True, lr=5e-3)
    reg.fit(X, y)
    group = reg.net_.optimizer_.param_groups[0]  # the fine-tuning optimizer
    assert (group["momentum"], group["nesterov"], group["lr"]) == (0.5, True, 5e-3)
    # scikit-learn's constructors never raise: unknown names are refused by fit
    for bad, match in [(dict(iterator_train__shuffle=False), "nested parameter.*iterator_train"),
                       (dict(foo=1), "unexpected keyword argument.*'foo'")]:
        est = PrunedMLPRegressor(**FAST, **bad)
        assert clone(est).get_params()[next(iter(bad))] == next(iter(bad.values()))
        with pytest.raises(TypeError, match=match):
            est.fit(X, y)


def test_search_over_optimizer_momentum(reg_data):
    X, y = reg_data
    search = GridSearchCV(PrunedMLPRegressor(**FAST, optimizer="sgd"),
                          {"optimizer__momentum": [0.0, 0.9]}, cv=2).fit(X, y)
    assert list(search.cv_results_["param_optimizer__momentum"]) == [0.0, 0.9]
    best = search.best_params_["optimizer__momentum"]
    assert search.best_estimator_.net_.optimizer_.param_groups[0]["momentum"] == best
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] != scores[1]  # the momentum reached the optimizer


def test_nested_parameters_on_the_classifier():
    X, y = make_regression(n_samples=60, n_features=4, random_state=0)
    y = (y > 0).astype(int)
    clf = PrunedMLPClassifier(**FAST, optimizer=torch.optim.RMSprop, optimizer__alpha=0.5)
    clf.fit(X, y)
    assert clf.net_.optimizer_.param_groups[0]["alpha"] == 0.5
