"""Pruning schedules of the estimators (issue #5) and how fine-tuning holds removed weights."""

import pickle

import numpy as np
import pytest
import torch
from skorch import NeuralNetRegressor
from sklearn.datasets import make_blobs, make_regression

from sk_ecprune.engine import kept_masks, make_permanent, prune_model
from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor
from sk_ecprune.estimators._callbacks import HoldRemovedWeights
from sk_ecprune.engine import MLP

FAST = dict(hidden_layer_sizes=(12, 8), max_epochs=3, finetune_epochs=5, lr=1e-2, batch_size=32)


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=90, n_features=6, noise=0.1, random_state=1)
    return X.astype(np.float32), (y / y.std()).astype(np.float32)


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_blobs(n_samples=90, n_features=5, centers=3, random_state=1)
    return X.astype(np.float32), y


def _weights(module):
    return [m.weight.detach().clone() for m in module.modules() if isinstance(m, torch.nn.Linear)]


def _n_weights(est):
    return sum(w.numel() for w in _weights(est.net_.module_))


# ------------------------------------------------------------- the fine-tuning callback


def test_holding_plain_weights_trains_like_the_prune_reparametrisation(reg_data):
    """Masking after each step gives the kept weights the masked-forward updates."""
    X, y = reg_data
    reparam, plain = MLP(6, 1, (12, 8), "relu"), MLP(6, 1, (12, 8), "relu")
    plain.load_state_dict(reparam.state_dict())
    for module in (reparam, plain):
        prune_model(module, torch.from_numpy(X), ratio=0.6, method="ec")
    masks = kept_masks(plain)
    make_permanent(plain)

    def train(module, callbacks):
        net = NeuralNetRegressor(module, max_epochs=4, lr=1e-2, batch_size=16,
                                 optimizer=torch.optim.Adam, train_split=None,
                                 iterator_train__shuffle=False, callbacks=callbacks)
        return net.fit(X, y.reshape(-1, 1)).module_

    via_prune = make_permanent(train(reparam, []))
    via_callback = train(plain, [HoldRemovedWeights(masks)])
    for a, b, keep in zip(_weights(via_prune), _weights(via_callback), masks.values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        assert torch.all(b[~keep] == 0)
        assert not torch.equal(b[keep], a.new_zeros(int(keep.sum())))


def test_fitted_net_keeps_removed_weights_at_zero_when_trained_further(reg_data):
    X, y = reg_data
    reg = PrunedMLPRegressor(**FAST, prune_ratio=0.7, random_state=0).fit(X, y)
    before = _weights(reg.net_.module_)
    reg = pickle.loads(pickle.dumps(reg))  # the callback survives a round trip
    reg.net_.partial_fit(X, y.reshape(-1, 1), epochs=2)
    after = _weights(reg.net_.module_)
    assert all(torch.all(w[w0 == 0] == 0) for w, w0 in zip(after, before))
    assert all(not torch.equal(w[w0 != 0], w0[w0 != 0]) for w, w0 in zip(after, before))


# ------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("Est", [PrunedMLPRegressor, PrunedMLPClassifier])
@pytest.mark.parametrize("steps, gradual", [(4, False), (4, True), (7, True)])
@pytest.mark.parametrize("ratio", [0.5, 0.93])
def test_every_schedule_reaches_exactly_round_ratio_weights(
    Est, steps, gradual, ratio, reg_data, clf_data
):
    X, y = reg_data if Est is PrunedMLPRegressor else clf_data
    est = Est(**FAST, prune_ratio=ratio, prune_steps=steps, gradual=gradual, random_state=0)
    est.fit(X, y)
    n = _n_weights(est)
    n_zero = sum(int((w == 0).sum()) for w in _weights(est.net_.module_))
    assert n_zero == round(ratio * n)
    report = est.pruning_report_
    assert report.n_removed == report.n_removed_now == round(ratio * n)
    assert report.steps == steps
    assert len(est.history_finetune_) == FAST["finetune_epochs"]


def test_gradual_spreads_the_epochs_and_ends_with_fine_tuning(reg_data):
    X, y = reg_data
    est = PrunedMLPRegressor(**{**FAST, "finetune_epochs": 6}, prune_ratio=0.8, prune_steps=4,
                             gradual=True, random_state=0)
    schedule = est._schedule()
    assert [epochs for _, _, epochs in schedule] == [1, 2, 1, 2]
    assert [steps for _, steps, _ in schedule] == [1, 1, 1, 1]
    kept = [1 - r for r, _, _ in schedule]
    np.testing.assert_allclose(np.diff(np.log(kept)), np.log(0.2) / 4)  # geometric
    assert schedule[-1][0] == 0.8
    est = PrunedMLPRegressor(**FAST, prune_ratio=0.8, prune_steps=8, gradual=True)
    assert sum(e for _, _, e in est._schedule()) == FAST["finetune_epochs"]
    assert est._schedule()[-1][2] > 0


class _RecordLearningRates:
    """A stand-in for ``torch.optim.Adam`` that records the lr of every optimizer built."""

    def __init__(self):
        self.lrs = []

    def __call__(self, params, lr, **kwargs):
        self.lrs.append(lr)
        return torch.optim.Adam(params, lr=lr, **kwargs)


@pytest.mark.parametrize("gradual", [False, True])
def test_finetune_lr_sets_only_the_fine_tuning_optimizer(gradual, reg_data):
    X, y = reg_data
    kw = dict(**FAST, prune_ratio=0.6, prune_steps=2, gradual=gradual, random_state=0)
    record = _RecordLearningRates()
    est = PrunedMLPRegressor(**kw, optimizer=record, finetune_lr=3e-4).fit(X, y)
    assert record.lrs == [1e-2, 3e-4]  # the dense stage's, then one for the fine-tuning
    assert est.net_.optimizer_.param_groups[0]["lr"] == 3e-4
    default = PrunedMLPRegressor(**kw).fit(X, y)
    same = PrunedMLPRegressor(**kw, finetune_lr=FAST["lr"]).fit(X, y)
    assert est.loss_before_pruning_ == default.loss_before_pruning_  # same dense network
    for a, b, c in zip(*(_weights(e.net_.module_) for e in (default, same, est))):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # None means lr: the same fit
        assert not torch.allclose(a, c)  # another fine-tuning


@pytest.mark.parametrize("Est", [PrunedMLPRegressor, PrunedMLPClassifier])
def test_one_gradual_step_is_one_shot_pruning(Est, reg_data, clf_data):
    X, y = reg_data if Est is PrunedMLPRegressor else clf_data
    kw = dict(**FAST, prune_ratio=0.6, random_state=0)
    one_shot = Est(**kw, prune_steps=1, gradual=False).fit(X, y)
    gradual = Est(**kw, prune_steps=1, gradual=True).fit(X, y)
    for a, b in zip(_weights(one_shot.net_.module_), _weights(gradual.net_.module_)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_iterative_pruning_differs_from_one_shot_and_is_reproducible(clf_data):
    X, y = clf_data
    kw = dict(**{**FAST, "finetune_epochs": 0}, prune_ratio=0.8, random_state=0)
    one_shot = PrunedMLPClassifier(**kw, prune_steps=1).fit(X, y)
    iterative = PrunedMLPClassifier(**kw, prune_steps=5, gradual=False).fit(X, y)
    again = PrunedMLPClassifier(**kw, prune_steps=5, gradual=True).fit(X, y)  # no epochs
    masks = [[w != 0 for w in _weights(e.net_.module_)] for e in (one_shot, iterative, again)]
    assert any(not torch.equal(a, b) for a, b in zip(masks[0], masks[1]))
    # one engine call of 5 steps (masks as prune's reparametrisation) against 5 calls of 1
    # step (plain weights in between): the same arithmetic on another path, so to rounding
    np.testing.assert_allclose(iterative.predict_proba(X), again.predict_proba(X), rtol=1e-6)


def test_layer_floor_keeps_a_fraction_of_every_layer(reg_data):
    X, y = reg_data
    est = PrunedMLPRegressor(**FAST, prune_ratio=0.9, layer_floor=0.05, prune_steps=3,
                             gradual=True, random_state=0).fit(X, y)
    for name, sparsity in est.layer_sparsity_.items():
        assert sparsity <= 0.95 + 1e-9, name
    with pytest.raises(ValueError, match="layer_floor"):
        PrunedMLPRegressor(**FAST, prune_ratio=0.9, layer_floor=0.5).fit(X, y)


def test_losses_and_time_are_recorded_around_the_pruning(reg_data):
    X, y = reg_data
    est = PrunedMLPRegressor(**FAST, prune_ratio=0.8, prune_steps=3, gradual=True,
                             random_state=0).fit(X, y)
    assert est.pruning_time_ > 0
    assert est.pruning_time_ == pytest.approx(est.pruning_report_.time_s)
    assert np.isfinite(est.loss_before_pruning_) and np.isfinite(est.loss_after_pruning_)
    dense = PrunedMLPRegressor(**FAST, prune_ratio=0, random_state=0).fit(X, y)
    assert dense.pruning_report_ is None and dense.pruning_time_ == 0
    assert dense.loss_after_pruning_ == dense.loss_before_pruning_
    assert len(dense.history_finetune_) == FAST["finetune_epochs"]


def test_scoring_samples_subsamples_only_larger_data(reg_data):
    X, y = reg_data  # 90 rows
    kw = dict(**FAST, prune_ratio=0.7, random_state=0)
    every_row = PrunedMLPRegressor(**kw, scoring_samples=None).fit(X, y)
    more_than_x = PrunedMLPRegressor(**kw, scoring_samples=500).fit(X, y)
    subset = PrunedMLPRegressor(**kw, scoring_samples=20).fit(X, y)
    np.testing.assert_array_equal(every_row.predict(X), more_than_x.predict(X))
    masks = [[w != 0 for w in _weights(e.net_.module_)] for e in (every_row, subset)]
    assert any(not torch.equal(a, b) for a, b in zip(*masks))
    assert subset.sparsity_ == every_row.sparsity_


@pytest.mark.parametrize("Est", [PrunedMLPRegressor, PrunedMLPClassifier])
@pytest.mark.parametrize("ratio", [0.6, 0.93])
def test_magnitude_budget_schedule_reaches_exactly_round_ratio_weights(
    Est, ratio, reg_data, clf_data
):
    X, y = reg_data if Est is PrunedMLPRegressor else clf_data
    est = Est(**FAST, prune_ratio=ratio, scope="magnitude_budget", random_state=0).fit(X, y)
    n_zero = sum(int((w == 0).sum()) for w in _weights(est.net_.module_))
    assert n_zero == round(ratio * _n_weights(est))
    assert est.pruning_report_.scope == "magnitude_budget"
