"""PruningCurveDisplay: refits clones of an estimator (or reads a results table) and plots."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.linear_model import LinearRegression  # noqa: E402
from sklearn.metrics import log_loss, mean_squared_error  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from sk_ecprune import PrunedMLPClassifier, PrunedMLPRegressor, PruningCurveDisplay  # noqa: E402

RATIOS = (0.3, 0.8)
METHODS = ("ec", "magnitude")
TINY = dict(hidden_layer_sizes=(8,), max_epochs=2, finetune_epochs=2, batch_size=16)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def classification_data():
    X, y = make_classification(n_samples=80, n_features=6, n_informative=4, n_classes=3,
                               random_state=0)
    return X[:60], X[60:], y[:60], y[60:]


@pytest.fixture(scope="module")
def classifier_display(classification_data):
    X, X_test, y, y_test = classification_data
    return PruningCurveDisplay.from_estimator(
        PrunedMLPClassifier(**TINY), X, y, X_test=X_test, y_test=y_test, ratios=RATIOS,
        methods=METHODS, seeds=(0, 1))


def _curve_labels(ax):
    return [line.get_label() for line in ax.get_lines()]


def test_from_estimator_axes_lines_and_dense(classifier_display):
    display = classifier_display
    assert len(display.axes_) == 2
    assert [ax.get_title() for ax in display.axes_] == ["right after pruning",
                                                        "after fine-tuning"]
    assert display.loss_name == "log loss"
    for ax, stage in zip(display.axes_, ("pruned", "finetuned")):
        labels = _curve_labels(ax)
        assert labels == [*METHODS, "dense"]
        for method in METHODS:
            values = display.losses[stage][method]
            assert values.shape == (2, len(RATIOS))  # seeds x ratios
            assert np.all(np.isfinite(values)) and np.all(values > 0)
            line = display.lines_[stage][method]
            np.testing.assert_allclose(line.get_xdata(), RATIOS)
            np.testing.assert_allclose(line.get_ydata(), np.median(values, axis=0))
        dense = ax.get_lines()[-1]
        np.testing.assert_allclose(dense.get_ydata(), [display.dense_loss] * 2)
        assert ax.get_yscale() == "log"
        assert len(ax.collections) == len(METHODS)  # one spread band per method (2 seeds)


def test_from_estimator_stages_match_manual_fits(classifier_display, classification_data):
    """The "pruned" stage is a clone with finetune_epochs=0, "finetuned" keeps the estimator's."""
    X, X_test, y, y_test = classification_data
    for stage, finetune in (("pruned", 0), ("finetuned", TINY["finetune_epochs"])):
        clf = PrunedMLPClassifier(**{**TINY, "finetune_epochs": finetune}, prune_ratio=0.8,
                                  method="magnitude", random_state=1).fit(X, y)
        expected = log_loss(y_test, clf.predict_proba(X_test), labels=clf.classes_)
        assert classifier_display.losses[stage]["magnitude"][1, 1] == pytest.approx(expected)
    dense = [PrunedMLPClassifier(**{**TINY, "finetune_epochs": 0}, prune_ratio=0.0,
                                 random_state=s).fit(X, y) for s in (0, 1)]
    expected = np.median([log_loss(y_test, d.predict_proba(X_test), labels=d.classes_)
                          for d in dense])
    assert classifier_display.dense_loss == pytest.approx(expected)


def test_from_estimator_pipeline_sets_the_mlp_params_only():
    X, y = make_regression(n_samples=60, n_features=5, noise=1.0, random_state=0)
    y = y / y.std()
    pipe = Pipeline([("pca", PCA(n_components=4, random_state=7)), ("scale", StandardScaler()),
                     ("mlp", PrunedMLPRegressor(**TINY))])
    display = PruningCurveDisplay.from_estimator(pipe, X, y, ratios=(0.5,), methods=("ec",),
                                                 stages=("finetuned",), seeds=(3,))
    assert len(display.axes_) == 1 and list(display.losses) == ["finetuned"]
    assert display.loss_name == "mean squared error"
    assert _curve_labels(display.axes_[0]) == ["ec", "dense"]
    manual = clone(pipe).set_params(mlp__prune_ratio=0.5, mlp__method="ec",
                                    mlp__random_state=3).fit(X, y)
    assert manual.named_steps["pca"].random_state == 7
    expected = mean_squared_error(y, manual.predict(X))  # default: loss on the training data
    assert display.losses["finetuned"]["ec"][0, 0] == pytest.approx(expected)


def test_from_estimator_single_stage_string_and_ax(classification_data):
    X, _, y, _ = classification_data
    fig, ax = plt.subplots()
    display = PruningCurveDisplay.from_estimator(PrunedMLPClassifier(**TINY), X, y,
                                                 ratios=0.5, methods="random",
                                                 stages="pruned", ax=ax)
    assert display.figure_ is fig and list(display.axes_) == [ax]
    assert display.losses["pruned"]["random"].shape == (1, 1)


@pytest.mark.parametrize("stages", [("pruned", "after"), ("fine-tuned",), ()])
def test_from_estimator_bad_stage(classification_data, stages):
    X, _, y, _ = classification_data
    with pytest.raises(ValueError, match="stages"):
        PruningCurveDisplay.from_estimator(PrunedMLPClassifier(**TINY), X, y, stages=stages)


def test_from_estimator_needs_a_pruned_mlp():
    X, y = make_regression(n_samples=20, n_features=3, random_state=0)
    with pytest.raises(ValueError, match="PrunedMLPRegressor"):
        PruningCurveDisplay.from_estimator(LinearRegression(), X, y)


def _results_frame(display):
    pd = pytest.importorskip("pandas")
    rows = [dict(stage=stage, method=method, seed=seed, ratio=ratio, loss=values[i, j])
            for stage, per_method in display.losses.items()
            for method, values in per_method.items()
            for i, seed in enumerate((0, 1)) for j, ratio in enumerate(display.ratios)]
    return pd.DataFrame(rows)


def test_from_results_round_trip(classifier_display):
    frame = _results_frame(classifier_display)
    frame.loc[len(frame)] = dict(stage="dense", method="dense", seed=0, ratio=0.0, loss=0.5)
    frame.loc[len(frame)] = dict(stage="dense", method="dense", seed=1, ratio=0.0, loss=0.7)
    frame.loc[len(frame)] = dict(stage="dense", method="dense_30ep", seed=0, ratio=0.0, loss=0.4)
    display = PruningCurveDisplay.from_results(frame)
    np.testing.assert_allclose(display.ratios, RATIOS)
    for stage in ("pruned", "finetuned"):
        assert list(display.losses[stage]) == list(METHODS)
        for method in METHODS:
            np.testing.assert_allclose(display.losses[stage][method],
                                       classifier_display.losses[stage][method])
    # "dense" rows become reference lines (median over seeds), not curves at ratio 0.
    assert display.dense_loss == {"dense": pytest.approx(0.6), "dense_30ep": pytest.approx(0.4)}
    for ax in display.axes_:
        assert _curve_labels(ax) == [*METHODS, "dense", "dense_30ep"]
    # The same table as a list of dicts, a subset of methods, no drawing.
    lazy = PruningCurveDisplay.from_results(frame.to_dict("records"), methods=["magnitude"],
                                            dense_loss=1.0, plot=False)
    assert not hasattr(lazy, "figure_") and list(lazy.losses["pruned"]) == ["magnitude"]
    assert lazy.dense_loss == 1.0


def test_from_results_method_on_fewer_ratios_and_seeds():
    rows = [dict(stage="finetuned", method="ec", seed=s, ratio=r, loss=1.0 + r + s)
            for s in (0, 1, 2) for r in (0.1, 0.5, 0.9)]
    rows += [dict(stage="finetuned", method="nonlinear", seed=0, ratio=0.5, loss=2.0),
             dict(stage="finetuned", method="nonlinear", seed=0, ratio=0.9, loss=3.0)]
    display = PruningCurveDisplay.from_results(rows)
    assert list(display.losses) == ["finetuned"] and len(display.axes_) == 1
    line = display.lines_["finetuned"]["nonlinear"]
    np.testing.assert_allclose(line.get_xdata(), [0.5, 0.9])  # only where it was measured
    np.testing.assert_allclose(line.get_ydata(), [2.0, 3.0])
    np.testing.assert_allclose(display.lines_["finetuned"]["ec"].get_ydata(), [2.1, 2.5, 2.9])
    assert len(display.axes_[0].collections) == 1  # no band for the single-seed method


def test_from_results_errors():
    with pytest.raises(ValueError, match="loss"):
        PruningCurveDisplay.from_results([dict(stage="pruned", method="ec", seed=0, ratio=0.5)])
    with pytest.raises(ValueError, match="no rows of stage"):
        PruningCurveDisplay.from_results(
            [dict(stage="dense", method="dense", seed=0, ratio=0.0, loss=1.0)])


def test_plot_checks_axes_and_spread(classifier_display):
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="Need 2 axes"):
        classifier_display.plot(ax=ax)
    with pytest.raises(ValueError, match="spread"):
        classifier_display.plot(spread="iqr")
    redrawn = classifier_display.plot(spread="std", logy=False)
    assert redrawn.axes_[0].get_yscale() == "linear"
    assert len(redrawn.axes_[0].collections) == len(METHODS)


def test_a_method_keeps_its_colour_in_every_panel():
    rows = [dict(stage=stage, method=method, seed=0, ratio=r, loss=1.0 + r)
            for stage, methods in (("pruned", ["a", "c"]), ("finetuned", ["b", "a", "c"]))
            for method in methods for r in (0.5, 0.9)]
    display = PruningCurveDisplay.from_results(rows)
    lines = display.lines_
    assert lines["pruned"]["a"].get_color() == lines["finetuned"]["a"].get_color()
    assert lines["pruned"]["c"].get_color() == lines["finetuned"]["c"].get_color()
    assert len({line.get_color() for line in lines["finetuned"].values()}) == 3
