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
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.metrics import log_loss, mean_squared_error  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
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
    redrawn = classifier_display.plot(spread="std", yscale="linear")
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


# ------------------------------------------------------------------------ y-axis scale
def test_the_default_y_scale_follows_the_metric(classification_data):
    """Losses on a log axis, scores (accuracy) on a linear one; yscale= overrides."""
    rows = [dict(stage="finetuned", method="ec", seed=0, ratio=r, loss=0.1 + r,
                 accuracy=0.9 - r / 2) for r in (0.5, 0.9)]
    assert PruningCurveDisplay.from_results(rows).axes_[0].get_yscale() == "log"
    by_accuracy = PruningCurveDisplay.from_results(rows, loss_column="accuracy")
    assert by_accuracy.axes_[0].get_yscale() == "linear"
    assert by_accuracy.plot(yscale="log").axes_[0].get_yscale() == "log"
    forced = PruningCurveDisplay.from_results(rows, yscale="linear")
    assert forced.axes_[0].get_yscale() == "linear"
    negative = [dict(r, loss=r["loss"] - 1.0) for r in rows]  # no log axis for values <= 0
    assert PruningCurveDisplay.from_results(negative).axes_[0].get_yscale() == "linear"
    X, X_test, y, y_test = classification_data
    display = PruningCurveDisplay.from_estimator(
        PrunedMLPClassifier(**TINY), X, y, X_test=X_test, y_test=y_test, ratios=0.5,
        methods="magnitude", stages="pruned", scoring="accuracy")
    assert display.loss_name == "accuracy" and display.axes_[0].get_yscale() == "linear"
    assert 0 <= display.losses["pruned"]["magnitude"][0, 0] <= 1


# --------------------------------------------------------------------- from_cv_results
@pytest.fixture(scope="module")
def search(classification_data):
    X, _, y, _ = classification_data
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", PrunedMLPClassifier(**TINY, random_state=0))])
    grid = {"mlp__prune_ratio": list(RATIOS), "mlp__method": list(METHODS)}
    return GridSearchCV(pipe, grid, cv=3, refit=False,
                        scoring={"accuracy": "accuracy", "log_loss": "neg_log_loss"}).fit(X, y)


def test_from_cv_results_mean_and_std_over_folds_per_method(search):
    display = PruningCurveDisplay.from_cv_results(search, metric="accuracy")
    results = search.cv_results_
    assert list(display.losses) == ["cv"] and len(display.axes_) == 1
    assert _curve_labels(display.axes_[0]) == [f"method={m}" for m in METHODS]
    assert display.axes_[0].get_xlabel() == "pruning ratio"
    assert display.loss_name == "accuracy" and display.axes_[0].get_yscale() == "linear"
    np.testing.assert_allclose(display.ratios, RATIOS)
    for method in METHODS:
        per_fold = display.losses["cv"][f"method={method}"]
        assert per_fold.shape == (3, len(RATIOS))
        for j, ratio in enumerate(RATIOS):
            (i,) = [i for i, p in enumerate(results["params"])
                    if p == {"mlp__prune_ratio": ratio, "mlp__method": method}]
            assert per_fold[:, j] == pytest.approx(
                [results[f"split{k}_test_accuracy"][i] for k in range(3)])
            line = display.lines_["cv"][f"method={method}"]
            assert line.get_ydata()[j] == pytest.approx(results["mean_test_accuracy"][i])
            assert per_fold[:, j].std() == pytest.approx(results["std_test_accuracy"][i])
    assert len(display.axes_[0].collections) == len(METHODS)  # one ± std band per method


def test_from_cv_results_a_neg_loss_is_drawn_positive_on_a_log_axis(search):
    display = PruningCurveDisplay.from_cv_results(search, x="mlp__prune_ratio",
                                                  metric="log_loss")
    assert display.loss_name == "log loss" and display.axes_[0].get_yscale() == "log"
    line = display.lines_["cv"]["method=ec"]
    i = search.cv_results_["params"].index({"mlp__prune_ratio": RATIOS[0], "mlp__method": "ec"})
    assert line.get_ydata()[0] == pytest.approx(-search.cv_results_["mean_test_log_loss"][i])
    fig, ax = plt.subplots()
    linear = PruningCurveDisplay.from_cv_results(search, metric="log_loss", ax=ax,
                                                 yscale="linear")
    assert linear.figure_ is fig and ax.get_yscale() == "linear"


def test_from_cv_results_errors(search):
    with pytest.raises(ValueError, match="several metrics.*metric="):
        PruningCurveDisplay.from_cv_results(search)  # refit=False names no metric
    with pytest.raises(ValueError, match="'f1' is not in"):
        PruningCurveDisplay.from_cv_results(search, metric="f1")
    with pytest.raises(ValueError, match="x='lr' is not a parameter the search varied"):
        PruningCurveDisplay.from_cv_results(search, x="lr", metric="accuracy")
    with pytest.raises(ValueError, match="numeric"):
        PruningCurveDisplay.from_cv_results(search, x="method", metric="accuracy")
    with pytest.raises(NotFittedError, match="fit the search"):
        PruningCurveDisplay.from_cv_results(GridSearchCV(PrunedMLPClassifier(), {}))


def test_from_results_points_a_cv_results_table_to_from_cv_results(search):
    pd = pytest.importorskip("pandas")
    with pytest.raises(ValueError, match=r"missing \['loss', 'method', 'ratio', 'seed', "
                                         r"'stage'\].*from_cv_results\(search\)"):
        PruningCurveDisplay.from_results(pd.DataFrame(search.cv_results_))


class _FinishedSearch:
    """The attributes from_cv_results reads, as a successive-halving search leaves them."""

    scoring, refit, n_splits_ = None, True, 2
    estimator = PrunedMLPRegressor()

    def __init__(self, rows):
        params, scores = zip(*rows)
        self.cv_results_ = {"params": list(params), "mean_test_score": np.mean(scores, 1),
                            "split0_test_score": np.array([s[0] for s in scores]),
                            "split1_test_score": np.array([s[1] for s in scores])}


def test_from_cv_results_later_evaluations_win_and_labels_name_every_varied_parameter():
    rows = [({"prune_ratio": 0.5, "lr": 0.1, "batch_size": 8}, (0.1, 0.2)),
            ({"prune_ratio": 0.9, "lr": 0.1, "batch_size": 8}, (0.3, 0.4)),
            ({"prune_ratio": 0.5, "lr": 0.01, "batch_size": 8}, (0.5, 0.6)),
            ({"prune_ratio": 0.5, "lr": 0.1, "batch_size": 8}, (0.7, 0.9))]  # re-evaluated
    display = PruningCurveDisplay.from_cv_results(_FinishedSearch(rows))
    assert display.loss_name == "R²" and display.axes_[0].get_yscale() == "linear"
    assert list(display.losses["cv"]) == ["lr=0.1", "lr=0.01"]  # batch_size did not vary
    np.testing.assert_allclose(display.losses["cv"]["lr=0.1"], [[0.7, 0.3], [0.9, 0.4]])
    only = display.losses["cv"]["lr=0.01"]  # measured at 0.5 only: NaN at 0.9, drawn where run
    assert np.isnan(only[:, 1]).all()
    np.testing.assert_allclose(display.lines_["cv"]["lr=0.01"].get_xdata(), [0.5])
