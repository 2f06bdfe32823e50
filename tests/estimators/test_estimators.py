"""Behaviour of PrunedMLPRegressor and PrunedMLPClassifier (issue #3)."""

import io
import pickle
import re
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from skorch.exceptions import DeviceWarning
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_regression
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_ecprune.engine import SCORERS, PruningReport
from sk_ecprune.estimators import PrunedMLPClassifier, PrunedMLPRegressor
from sk_ecprune.estimators._params import InvalidParameterError

# Tiny networks and few epochs keep every fit well under a second.
FAST = dict(hidden_layer_sizes=(8, 8), max_epochs=3, finetune_epochs=2, lr=1e-2, batch_size=32)
ESTIMATORS = [PrunedMLPRegressor, PrunedMLPClassifier]

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def reg_data():
    X, y = make_regression(n_samples=80, n_features=5, noise=0.1, random_state=0)
    return X, y / y.std()


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_blobs(n_samples=90, n_features=4, centers=3, random_state=0)
    return X, np.array(["ant", "bee", "cat"])[y]


def fast(Est, **params):
    """An estimator with the FAST settings, overridden by ``params``."""
    return Est(**{**FAST, **params})


def _data(Est, reg_data, clf_data):
    return reg_data if Est is PrunedMLPRegressor else clf_data


def _linear_weights(est):
    layers = [m for m in est.net_.module_.modules() if isinstance(m, torch.nn.Linear)]
    return [m.weight.detach().clone() for m in layers], [m.bias.detach().clone() for m in layers]


# --------------------------------------------------------------------------- fit / predict
def test_regressor_fit_predict_score(reg_data):
    X, y = reg_data
    reg = fast(PrunedMLPRegressor, random_state=0).fit(X, y)
    pred = reg.predict(X)
    assert pred.shape == (len(X),) and pred.dtype == np.float64
    assert reg.n_outputs_ == 1
    assert np.isfinite(reg.score(X, y))


@pytest.mark.parametrize("shape", [(80, 1), (80, 3)])
def test_regressor_2d_targets_keep_their_shape(reg_data, shape):
    X, y = reg_data
    Y = np.column_stack([y * (k + 1) for k in range(shape[1])])
    reg = fast(PrunedMLPRegressor, random_state=0).fit(X, Y)
    assert reg.n_outputs_ == shape[1]
    assert reg.predict(X).shape == shape
    assert reg.net_.module_.layers[-1].out_features == shape[1]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classifier_string_labels(clf_data, n_classes):
    X, y = clf_data
    keep = np.isin(y, ["ant", "bee", "cat"][:n_classes])
    X, y = X[keep], y[keep]
    clf = fast(PrunedMLPClassifier, random_state=0).fit(X, y)
    assert list(clf.classes_) == ["ant", "bee", "cat"][:n_classes]
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), n_classes) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    pred = clf.predict(X)
    assert set(pred) <= set(clf.classes_)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])
    # binary problems get two logits; the module outputs logits, not probabilities
    assert clf.net_.module_.layers[-1].out_features == n_classes
    assert 0 <= clf.score(X, y) <= 1


def test_classifier_learns(clf_data):
    X, y = clf_data
    clf = PrunedMLPClassifier(hidden_layer_sizes=(16,), max_epochs=20, lr=1e-2, random_state=0)
    assert clf.fit(X, y).score(X, y) > 0.9


def test_predict_before_fit_raises(reg_data):
    with pytest.raises(NotFittedError):
        PrunedMLPRegressor().predict(reg_data[0])


# ------------------------------------------------------------------------ fitted attributes
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_fitted_attributes(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    est = fast(Est, prune_ratio=0.6, random_state=0).fit(X, y)
    assert est.n_features_in_ == X.shape[1]
    assert not hasattr(est, "feature_names_in_")
    assert est.sparsity_ == pytest.approx(0.6, abs=0.01)
    assert set(est.layer_sparsity_) == {"layers.0", "layers.2", "layers.4"}
    report = est.pruning_report_
    assert isinstance(report, PruningReport)
    assert (report.method, report.ratio, report.scope) == ("ec_obs", 0.6, "global")
    assert report.sparsity == pytest.approx(est.sparsity_)
    assert len(est.history_dense_) == 3 and len(est.history_finetune_) == 2
    assert np.isfinite([est.loss_before_pruning_, est.loss_after_pruning_]).all()
    assert est.net_.history is est.history_finetune_


def test_feature_names_from_dataframe(clf_data):
    X, y = clf_data
    df = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    clf = fast(PrunedMLPClassifier, random_state=0).fit(df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c", "d"])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        np.testing.assert_array_equal(clf.predict(df), clf.predict(X))


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_prune_ratio_zero_gives_the_dense_network(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    est = fast(Est, prune_ratio=0, random_state=0).fit(X, y)
    assert est.sparsity_ == 0 and est.pruning_report_ is None
    assert all(s == 0 for s in est.layer_sparsity_.values())
    assert est.loss_before_pruning_ == est.loss_after_pruning_


@pytest.mark.parametrize("method", ["magnitude", "ec"])
def test_finetune_zero_is_the_network_right_after_pruning(reg_data, method):
    X, y = reg_data
    base = fast(PrunedMLPRegressor, finetune_epochs=0, random_state=0)
    dense = clone(base).set_params(prune_ratio=0).fit(X, y)
    pruned = clone(base).set_params(prune_ratio=0.5, method=method).fit(X, y)
    assert len(pruned.history_finetune_) == 0
    for (w_d, b_d), (w_p, b_p) in zip(zip(*_linear_weights(dense)), zip(*_linear_weights(pruned))):
        kept = w_p != 0
        # same dense training (same seed), then only removals: kept weights are untouched
        torch.testing.assert_close(w_p[kept], w_d[kept], rtol=0, atol=0)
        if method == "magnitude":  # no compensation: biases unchanged
            torch.testing.assert_close(b_p, b_d, rtol=0, atol=0)
    if method == "ec":  # EC shifts at least one bias
        assert any(not torch.equal(b_p, b_d) for b_p, b_d in zip(_linear_weights(pruned)[1],
                                                                   _linear_weights(dense)[1]))
    assert pruned.loss_before_pruning_ == dense.loss_before_pruning_


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_removed_weights_stay_zero_through_finetuning(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    # all epochs after the last step (gradual pruning would prune between them)
    base = fast(Est, prune_ratio=0.7, random_state=0, gradual=False)
    after_prune = clone(base).set_params(finetune_epochs=0).fit(X, y)
    tuned = clone(base).set_params(finetune_epochs=3).fit(X, y)
    for w0, w1 in zip(_linear_weights(after_prune)[0], _linear_weights(tuned)[0]):
        torch.testing.assert_close(w1 == 0, w0 == 0)  # same zeros, none regrown
        assert not torch.equal(w1, w0)  # fine-tuning did train the kept weights
    # pruning is permanent: plain parameters, no masks or hooks left
    for layer in tuned.net_.module_.modules():
        assert not hasattr(layer, "weight_mask") and not hasattr(layer, "weight_orig")
        assert not layer._forward_pre_hooks
    # the optimizer of the fitted net holds the plain weights, not stale masked ones
    opt_params = {id(p) for g in tuned.net_.optimizer_.param_groups for p in g["params"]}
    assert opt_params == {id(p) for p in tuned.net_.module_.parameters()}


@pytest.mark.parametrize("method", sorted(SCORERS))
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_every_registered_method(Est, method, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    est = Est(hidden_layer_sizes=(4,), max_epochs=1, finetune_epochs=1, prune_ratio=0.5,
              method=method, random_state=0).fit(X, y)
    assert est.sparsity_ == pytest.approx(0.5, abs=0.02)
    assert est.pruning_report_.method == method


def test_a_newly_registered_method_is_accepted(reg_data, monkeypatch):
    from sk_ecprune.engine import Importance

    def largest_first(module, layers, data, **_):
        return Importance([-layer.weight.detach().abs() for layer in layers])

    monkeypatch.setitem(SCORERS, "largest_first", largest_first)
    X, y = reg_data
    reg = fast(PrunedMLPRegressor, method="largest_first", finetune_epochs=0, random_state=0)
    dense = fast(PrunedMLPRegressor, prune_ratio=0, finetune_epochs=0, random_state=0)
    w_pruned = reg.fit(X, y).net_.module_.layers[0].weight.detach()
    w_dense = dense.fit(X, y).net_.module_.layers[0].weight.detach()
    assert reg.pruning_report_.method == "largest_first"
    assert w_dense.abs().max() not in w_pruned.abs()  # the largest weight went first


def test_layer_scope_prunes_each_layer(reg_data):
    X, y = reg_data
    reg = fast(PrunedMLPRegressor, prune_ratio=0.5, scope="layer", random_state=0).fit(X, y)
    for sparsity in reg.layer_sparsity_.values():
        assert sparsity == pytest.approx(0.5, abs=0.07)


def test_classifier_fisher_output_metric(clf_data):
    X, y = clf_data
    kw = dict(prune_ratio=0.6, finetune_epochs=0, random_state=0)
    euclid = fast(PrunedMLPClassifier, **kw, output_metric="euclidean").fit(X, y)
    fisher = fast(PrunedMLPClassifier, **kw, output_metric="fisher").fit(X, y)
    auto = fast(PrunedMLPClassifier, **kw).fit(X, y)
    assert fisher.sparsity_ == pytest.approx(0.6, abs=0.01)
    masks = [[w != 0 for w in _linear_weights(e)[0]] for e in (euclid, fisher, auto)]
    assert any(not torch.equal(a, b) for a, b in zip(masks[0], masks[1]))
    assert all(torch.equal(a, b) for a, b in zip(masks[1], masks[2]))  # auto is fisher


def test_regressor_output_metrics_are_all_euclidean(reg_data):
    # For squared error the Fisher metric is the Euclidean one: every option, same fit.
    X, y = reg_data
    kw = dict(prune_ratio=0.6, random_state=0)
    preds = [
        fast(PrunedMLPRegressor, **kw, output_metric=m).fit(X, y).predict(X)
        for m in ("auto", "euclidean", "fisher")
    ]
    np.testing.assert_array_equal(preds[0], preds[1])
    np.testing.assert_array_equal(preds[0], preds[2])


@pytest.mark.parametrize("hidden, n_linear", [(5, 2), ((), 1), ([6, 5, 4], 4)])
def test_hidden_layer_sizes_forms(reg_data, hidden, n_linear):
    X, y = reg_data
    reg = PrunedMLPRegressor(hidden_layer_sizes=hidden, max_epochs=1, finetune_epochs=1,
                             random_state=0).fit(X, y)
    assert len(reg.layer_sparsity_) == n_linear


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity", "gelu", "silu"])
def test_activations(reg_data, activation):
    X, y = reg_data
    reg = fast(PrunedMLPRegressor, activation=activation, random_state=0).fit(X, y)
    assert np.isfinite(reg.predict(X)).all()


@pytest.mark.parametrize("optimizer", ["sgd", "adamw", torch.optim.RMSprop])
def test_optimizers(reg_data, optimizer):
    X, y = reg_data
    reg = fast(PrunedMLPRegressor, optimizer=optimizer, weight_decay=1e-4, random_state=0)
    reg.fit(X, y)
    expected = optimizer if isinstance(optimizer, type) else type(reg.net_.optimizer_)
    assert isinstance(reg.net_.optimizer_, expected)
    assert reg.net_.optimizer_.param_groups[0]["weight_decay"] == 1e-4


# ------------------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_random_state_is_bitwise_reproducible_and_leaves_global_rng_alone(
    Est, reg_data, clf_data
):
    X, y = _data(Est, reg_data, clf_data)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a = fast(Est, random_state=3).fit(X, y)
    b = fast(Est, random_state=3).fit(X, y)
    torch.testing.assert_close(torch.get_rng_state(), torch_state, rtol=0, atol=0)
    assert all(np.array_equal(u, v) for u, v in zip(np.random.get_state(), np_state))
    for key, value in a.net_.module_.state_dict().items():
        assert torch.equal(value, b.net_.module_.state_dict()[key]), key
    assert a.history_finetune_[:, "train_loss"] == b.history_finetune_[:, "train_loss"]
    c = fast(Est, random_state=4).fit(X, y)
    assert not torch.equal(c.net_.module_.layers[0].weight, a.net_.module_.layers[0].weight)


def test_batches_are_shuffled(reg_data):
    # Training batches are drawn in random order (from the seeded, forked torch generator,
    # which is why the reproducibility test above holds); prediction keeps the order.
    from torch.utils.data import RandomSampler, SequentialSampler

    X, y = reg_data
    reg = fast(PrunedMLPRegressor, random_state=0).fit(X, y)
    dataset = reg.net_.get_dataset(torch.as_tensor(X, dtype=torch.float32))
    assert isinstance(reg.net_.get_iterator(dataset, training=True).sampler, RandomSampler)
    assert isinstance(reg.net_.get_iterator(dataset).sampler, SequentialSampler)


def test_random_state_none_varies(reg_data):
    X, y = reg_data
    a = fast(PrunedMLPRegressor).fit(X, y)
    b = fast(PrunedMLPRegressor).fit(X, y)
    assert not np.array_equal(a.predict(X), b.predict(X))


# ------------------------------------------------------------------------ validation split
def test_all_of_X_is_used_for_training_by_default(reg_data):
    X, y = reg_data
    reg = fast(PrunedMLPRegressor, random_state=0).fit(X, y)
    for history in (reg.history_dense_, reg.history_finetune_):
        assert sum(history[0, "batches", :, "train_batch_size"]) == len(X)
        assert "valid_loss" not in history[0]


def test_validation_fraction(clf_data):
    X, y = clf_data
    clf = fast(PrunedMLPClassifier, validation_fraction=0.2, random_state=0).fit(X, y)
    for history in (clf.history_dense_, clf.history_finetune_):
        assert sum(history[0, "batches", :, "train_batch_size"]) == 72
        assert "valid_loss" in history[-1] and "valid_acc" in history[-1]


# ------------------------------------------------------------------------------- verbose
def test_verbose_prints_a_pruning_line_per_call(reg_data, capsys):
    # the other progress output is tested in test_progress.py
    X, y = reg_data
    fast(PrunedMLPRegressor, prune_ratio=0.5, random_state=0, verbose=1).fit(X, y)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("Pruning:")]
    assert len(lines) == 5  # one per call of the default gradual schedule
    assert re.search(r"method=ec_obs, ratio=0.5, removed \d+/\d+ weights .* \(call 5/5 .* in "
                     r"[\d.]+s; train loss [\d.]+ -> [\d.]+", lines[-1]), lines[-1]
    assert "train loss" not in lines[0]


def test_verbose_zero_is_silent(reg_data, capsys):
    X, y = reg_data
    fast(PrunedMLPRegressor, random_state=0).fit(X, y)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("Est", ESTIMATORS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X_or_y(Est, bad, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    Xb = X.copy()
    Xb[3, 1] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        fast(Est).fit(Xb, y)
    yb = y.copy() if Est is PrunedMLPRegressor else (y == "bee").astype(float)
    yb[2] = bad
    with pytest.raises(ValueError, match="Input y contains (NaN|infinity)"):
        fast(Est).fit(X, yb)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_values_overflowing_float32(reg_data):
    X, y = reg_data
    with pytest.raises(ValueError, match="infinity or a value too large"):
        fast(PrunedMLPRegressor).fit(X * 1e300, y)
    with pytest.raises(ValueError, match="too large for float32"):
        fast(PrunedMLPRegressor).fit(X, y * 1e300)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_feature_count_mismatch_at_predict(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    est = fast(Est).fit(X, y)
    with pytest.raises(ValueError, match=f"X has 2 features, but {Est.__name__} is expecting "
                                         f"{X.shape[1]} features"):
        est.predict(X[:, :2])


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_1d_and_empty_X(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        fast(Est).fit(X[:, 0], y)
    with pytest.raises(ValueError, match="0 sample"):
        fast(Est).fit(X[:0], y[:0])


def test_single_class(clf_data):
    X, _ = clf_data
    with pytest.raises(ValueError, match="at least 2 classes.*only one class: 'a'"):
        fast(PrunedMLPClassifier).fit(X, ["a"] * len(X))


def test_continuous_target_for_classifier(reg_data):
    X, y = reg_data
    with pytest.raises(ValueError, match="Unknown label type"):
        fast(PrunedMLPClassifier).fit(X, y)


@pytest.mark.parametrize(
    "param, value, match",
    [
        ("prune_ratio", 1.0, r"'prune_ratio' .* must be a float in the range \[0.0, 1.0\)"),
        ("prune_ratio", -0.1, r"'prune_ratio' .* must be a float in the range \[0.0, 1.0\)"),
        ("method", "l1", r"'method' .* must be a str among .*'ec'.*'magnitude'"),
        ("scope", "unit", r"'scope' .* among \{.*'magnitude_budget'.*\}. Got 'unit'"),
        ("activation", "swish", r"'activation' .* must be a str among .*'prelu'"),
        ("max_epochs", -1, r"'max_epochs' .* must be an int in the range \[0, inf\)"),  # 0: prune as built
        ("finetune_epochs", -1, r"'finetune_epochs' .* an int in the range \[0, inf\)"),
        ("hidden_layer_sizes", 0, r"'hidden_layer_sizes' .* must be an array-like or an int "
                                  r"in the range \[1, inf\)"),
        ("lr", 0.0, r"'lr' .* must be a float in the range \(0(\.0)?, inf\)"),
        ("lr", float("nan"), r"'lr' .* must be a float in the range \(0(\.0)?, inf\)"),
        ("finetune_lr", 0.0, r"'finetune_lr' .* must be None or a float in the range \(0"),
        ("finetune_lr", float("nan"), r"'finetune_lr' .* must be None or a float in the ran"),
        ("finetune_lr", "1e-3", r"'finetune_lr' .* must be None or a float .* Got '1e-3'"),
        ("batch_size", 0, r"'batch_size' .* must be a str among \{'auto'\} or an int in the "
                          r"range \[1, inf\)"),
        ("optimizer", "lbfgs", r"'optimizer' .* must be a str among .*'adam'.* or a callable"),
        ("validation_fraction", 1.0, r"'validation_fraction' .* must be None or a float"),
    ],
)
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_invalid_parameters_name_the_accepted_values(Est, param, value, match, clf_data):
    X, y = clf_data
    with pytest.raises(InvalidParameterError, match=match):
        fast(Est, **{param: value}).fit(X, y)


@pytest.mark.parametrize("Est", [PrunedMLPClassifier, PrunedMLPRegressor])
@pytest.mark.parametrize(
    "param, value",
    [("output_metric", "kl"), ("prune_steps", 0), ("layer_floor", 1.0), ("gradual", "yes")],
)
def test_invalid_schedule_and_metric_parameters(Est, param, value, clf_data, reg_data):
    X, y = clf_data if Est is PrunedMLPClassifier else reg_data
    with pytest.raises(InvalidParameterError, match=f"'{param}' parameter of {Est.__name__}"):
        Est(**{param: value}).fit(X, y)


@pytest.mark.parametrize("hidden", [(8, 0), (8, -2), (4.5,), ("8",)])
def test_hidden_width_below_one_or_not_int(hidden, reg_data):
    with pytest.raises(ValueError, match=r"hidden_layer_sizes must hold integer widths >= 1"):
        fast(PrunedMLPRegressor, hidden_layer_sizes=hidden).fit(*reg_data)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_X_and_y_are_never_modified(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    for X_in in (X.copy(), X.astype(np.float32)):
        X_ref, y_ref = X_in.copy(), y.copy()
        est = fast(Est, prune_ratio=0.5, random_state=0).fit(X_in, y)
        est.predict(X_in)
        np.testing.assert_array_equal(X_in, X_ref)
        np.testing.assert_array_equal(y, y_ref)


# -------------------------------------------------------------------------------- device
def test_cuda_requested_without_cuda_is_a_clear_error(reg_data, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device='cuda' was requested but CUDA is not "
                                         r"available.*Use device='cpu'"):
        fast(PrunedMLPRegressor, device="cuda").fit(*reg_data)


def test_unknown_device_string(reg_data):
    with pytest.raises(ValueError, match=r"device='gpu' is not a torch device; use 'cpu', "
                                         r"'cuda'"):
        fast(PrunedMLPRegressor, device="gpu").fit(*reg_data)


class _TagNetTensorsAsCuda:
    """Make torch pickle the skorch net's tensors as if they lived on ``cuda:0``.

    This is what a net fitted on a GPU looks like inside a pickle: its module, optimizer
    and criterion storages tagged with a CUDA location, which ``torch.load`` restores on a
    machine without GPU only if given a ``map_location``. Tensors elsewhere in the
    estimator keep their true (CPU) tag.
    """

    def __init__(self, net):
        tensors = [*net.module_.parameters(), *net.module_.buffers()]
        for state in net.optimizer_.state.values():
            tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
        self.pointers = {t.untyped_storage().data_ptr() for t in tensors}

    def __enter__(self):
        def tagger(storage):
            return "cuda:0" if storage.data_ptr() in self.pointers else None

        self.entry = (1, tagger, lambda obj, location: None)
        torch.serialization._package_registry.append(self.entry)
        torch.serialization._package_registry.sort(key=lambda e: e[0])
        return self

    def __exit__(self, *exc):
        torch.serialization._package_registry.remove(self.entry)


def test_cuda_fitted_estimator_unpickles_on_cpu_only_machine(reg_data, monkeypatch):
    X, y = reg_data
    reg = fast(PrunedMLPRegressor, random_state=0).fit(X, y)
    expected = reg.predict(X)
    reg.set_params(device="cuda")
    reg.net_.device = "cuda"  # as after fitting with device="cuda"
    with _TagNetTensorsAsCuda(reg.net_):
        data = pickle.dumps(reg)
        weight = pickle.dumps(reg.net_.module_.layers[0].weight)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="Attempting to deserialize object on a CUDA"):
        pickle.loads(weight)  # the simulation is faithful: a bare CUDA tensor fails here ...
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restored = pickle.loads(data)  # ... but the estimator maps them to the CPU
    assert any(issubclass(w.category, DeviceWarning) and "no CUDA devices are available"
               in str(w.message) for w in caught)
    assert torch.device(restored.net_.device).type == "cpu"
    assert next(restored.net_.module_.parameters()).device.type == "cpu"
    np.testing.assert_array_equal(restored.predict(X), expected)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_fit_on_cuda(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    est = fast(Est, prune_ratio=0.5, device="cuda", random_state=0).fit(X, y)
    assert all(p.device.type == "cuda" for p in est.net_.module_.parameters())
    assert est.sparsity_ == pytest.approx(0.5, abs=0.01)
    cpu = fast(Est, prune_ratio=0.5, random_state=0).fit(X, y)
    # same seed and batches; float rounding may flip near-tied pruning decisions, so
    # compare quality rather than outputs
    outputs = est.predict(X) if Est is PrunedMLPRegressor else est.predict_proba(X)
    assert np.isfinite(outputs).all()
    assert abs(est.score(X, y) - cpu.score(X, y)) < 0.25
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.predict(X), est.predict(X))


@pytest.mark.gpu
@gpu
def test_cuda_pickle_loads_on_cpu_when_cuda_hidden(reg_data, monkeypatch):
    X, y = reg_data
    reg = fast(PrunedMLPRegressor, device="cuda", random_state=0).fit(X, y)
    expected = reg.predict(X)
    data = pickle.dumps(reg)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(DeviceWarning):
        restored = pickle.loads(data)
    assert next(restored.net_.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(restored.predict(X), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ ecosystem
@pytest.mark.parametrize("Est", ESTIMATORS)
def test_pipeline_and_cross_val_score(Est, reg_data, clf_data):
    X, y = _data(Est, reg_data, clf_data)
    pipe = make_pipeline(StandardScaler(), fast(Est, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert pipe.fit(X, y).predict(X).shape[0] == len(X)


def test_grid_search_in_pipeline_with_two_jobs(clf_data):
    X, y = clf_data
    pipe = make_pipeline(StandardScaler(), fast(PrunedMLPClassifier, random_state=0))
    grid = GridSearchCV(
        pipe,
        {
            "prunedmlpclassifier__prune_ratio": [0.0, 0.5],
            "prunedmlpclassifier__method": ["ec", "magnitude"],
            "prunedmlpclassifier__hidden_layer_sizes": [(8,), (8, 8)],
        },
        cv=2,
        n_jobs=2,
    ).fit(X, y)
    assert len(grid.cv_results_["params"]) == 8
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    best = grid.best_estimator_[-1]
    assert best.sparsity_ == pytest.approx(best.prune_ratio, abs=0.01)


@pytest.mark.parametrize("Est", ESTIMATORS)
def test_clone_pickle_joblib_round_trips(Est, reg_data, clf_data, tmp_path):
    X, y = _data(Est, reg_data, clf_data)
    est = fast(Est, prune_ratio=0.5, random_state=0).fit(X, y)
    expected = est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)

    def outputs(model):
        return model.predict_proba(X) if hasattr(model, "predict_proba") else model.predict(X)

    cloned = clone(est)
    assert not hasattr(cloned, "net_")
    np.testing.assert_array_equal(outputs(cloned.fit(X, y)), expected)
    np.testing.assert_array_equal(outputs(pickle.loads(pickle.dumps(est))), expected)
    joblib.dump(est, tmp_path / "est.joblib")
    np.testing.assert_array_equal(outputs(joblib.load(tmp_path / "est.joblib")), expected)
    buffer = io.BytesIO()
    torch.save(est.net_.module_.state_dict(), buffer)  # plain state dict: no masks
    buffer.seek(0)
    state = torch.load(buffer)
    assert not any(key.endswith(("_orig", "_mask")) for key in state)


def test_no_warnings_on_plain_fit(reg_data, clf_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast(PrunedMLPRegressor, random_state=0).fit(*reg_data).predict(reg_data[0])
        fast(PrunedMLPClassifier, random_state=0).fit(*clf_data).predict_proba(clf_data[0])


def test_mlp_module_layout_and_unknown_activation():
    from sk_ecprune.engine import MLP

    mlp = MLP(5, 3, hidden_layer_sizes=(4, 2), activation="prelu")
    kinds = [type(m).__name__ for m in mlp.layers]
    assert kinds == ["Linear", "PReLU", "Linear", "PReLU", "Linear"]  # no output activation
    assert mlp(torch.zeros(7, 5)).shape == (7, 3)
    with pytest.raises(ValueError, match=r"Unknown activation 'swish'; expected one of"):
        MLP(5, 3, activation="swish")
