"""Loss against pruning ratio, one line per method, in scikit-learn's Display style."""

from __future__ import annotations

from itertools import product

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone, is_classifier
from sklearn.metrics import check_scoring

STAGES = ("pruned", "finetuned")
_STAGE_TITLES = {"pruned": "right after pruning", "finetuned": "after fine-tuning"}


def _param_key(estimator, name):
    """The ``set_params`` key of ``name`` in ``estimator``, also inside a Pipeline."""
    keys = [k for k in estimator.get_params() if k == name or k.endswith("__" + name)]
    if not keys:
        raise ValueError(
            f"{type(estimator).__name__} has no parameter {name!r}; PruningCurveDisplay needs "
            "a PrunedMLPRegressor/PrunedMLPClassifier or a pipeline ending in one."
        )
    return min(keys, key=len)


def _fit_and_score(estimator, params, X, y, X_test, y_test, scorer):
    fitted = clone(estimator).set_params(**params).fit(X, y)
    return scorer(fitted, X_test, y_test)


class PruningCurveDisplay:
    """Test loss (or any score) against pruning ratio, per method and stage.

    Build it with :meth:`from_estimator` (refits clones of an estimator) or
    :meth:`from_results` (a table of already measured runs), then call :meth:`plot`.

    Parameters
    ----------
    ratios : array-like of shape (n_ratios,)
    losses : dict
        ``losses[stage][method]`` is an array of shape (n_seeds, n_ratios).
    dense_loss : float or None
        Loss of the unpruned network, drawn as a horizontal line.
    loss_name : str
        Label of the vertical axis.

    Attributes
    ----------
    figure_ : matplotlib Figure
    axes_ : ndarray of matplotlib Axes, one per stage
    """

    def __init__(self, ratios, losses, *, dense_loss=None, loss_name="test loss"):
        self.ratios = np.asarray(ratios, dtype=float)
        self.losses = losses
        self.dense_loss = dense_loss
        self.loss_name = loss_name

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y,
        *,
        X_test=None,
        y_test=None,
        ratios=(0.1, 0.3, 0.5, 0.7, 0.9),
        methods=("ec", "magnitude"),
        stages=STAGES,
        scoring=None,
        seeds=(0,),
        n_jobs=None,
        ax=None,
    ):
        """Refit clones of ``estimator`` at every ratio, method and seed, and plot the curves.

        Parameters
        ----------
        estimator : PrunedMLPRegressor, PrunedMLPClassifier, or a Pipeline ending in one
            Its other parameters are kept; ``prune_ratio``, ``method``, ``random_state`` and,
            for the ``"pruned"`` stage, ``finetune_epochs=0`` are set on each clone.
        X, y : training data.
        X_test, y_test : data the loss is measured on; defaults to the training data.
        ratios, methods, seeds : the grid.
        stages : subset of ("pruned", "finetuned")
        scoring : str or callable, default=None
            A scikit-learn scorer. By default log-loss for classifiers and mean squared error
            for regressors; a ``neg_*`` scorer is plotted as the positive loss.
        n_jobs : int, default=None
            Fits run in parallel with joblib.
        ax : matplotlib Axes or array of them, default=None

        Returns
        -------
        display : PruningCurveDisplay
        """
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"Unknown stages {sorted(unknown)}; expected a subset of {STAGES}.")
        if scoring is None:
            scoring = "neg_log_loss" if is_classifier(estimator) else "neg_mean_squared_error"
        scorer = check_scoring(estimator, scoring=scoring)
        X_test, y_test = (X, y) if X_test is None else (X_test, y_test)
        keys = {name: _param_key(estimator, name) for name in
                ("prune_ratio", "method", "random_state", "finetune_epochs")}
        jobs = [(stage, method, seed, ratio) for stage, method, seed, ratio
                in product(stages, methods, seeds, ratios)]

        def params(stage, method, seed, ratio):
            p = {keys["prune_ratio"]: ratio, keys["method"]: method, keys["random_state"]: seed}
            if stage == "pruned":
                p[keys["finetune_epochs"]] = 0
            return p

        dense_params = [{keys["prune_ratio"]: 0.0, keys["finetune_epochs"]: 0,
                         keys["random_state"]: seed} for seed in seeds]
        scores = Parallel(n_jobs=n_jobs)(
            delayed(_fit_and_score)(estimator, p, X, y, X_test, y_test, scorer)
            for p in [params(*job) for job in jobs] + dense_params
        )
        sign = -1.0 if isinstance(scoring, str) and scoring.startswith("neg_") else 1.0
        values = dict(zip(jobs, sign * np.asarray(scores[: len(jobs)])))
        losses = {
            stage: {
                method: np.array([[values[stage, method, s, r] for r in ratios] for s in seeds])
                for method in methods
            }
            for stage in stages
        }
        name = scoring.removeprefix("neg_").replace("_", " ") if isinstance(scoring, str) else "score"
        display = cls(ratios, losses, dense_loss=float(np.mean(sign * np.asarray(scores[len(jobs):]))),
                      loss_name=name)
        return display.plot(ax=ax)

    @classmethod
    def from_results(cls, results, *, loss_column="loss", dense_loss=None, ax=None, plot=True):
        """Build the display from a table with columns stage, method, seed, ratio and a loss.

        ``results`` is a pandas DataFrame or a list of dicts (e.g. a benchmark's CSV).
        """
        rows = results.to_dict("records") if hasattr(results, "to_dict") else list(results)
        ratios = sorted({float(r["ratio"]) for r in rows})
        seeds = sorted({r["seed"] for r in rows})
        table = {(r["stage"], r["method"], r["seed"], float(r["ratio"])): float(r[loss_column])
                 for r in rows}
        losses = {}
        for stage in [s for s in STAGES if any(r["stage"] == s for r in rows)]:
            methods = list(dict.fromkeys(r["method"] for r in rows if r["stage"] == stage))
            losses[stage] = {
                m: np.array([[table.get((stage, m, s, q), np.nan) for q in ratios] for s in seeds])
                for m in methods
            }
        display = cls(ratios, losses, dense_loss=dense_loss, loss_name=loss_column.replace("_", " "))
        return display.plot(ax=ax) if plot else display

    def plot(self, ax=None, *, logy=True, spread="minmax"):
        """Draw one panel per stage: median over seeds per method, band from min to max.

        Parameters
        ----------
        ax : matplotlib Axes or array of Axes, default=None
            One per stage; a new figure if None.
        logy : bool, default=True
            Logarithmic loss axis (losses span orders of magnitude across ratios).
        spread : {"minmax", "none"}, default="minmax"

        Returns
        -------
        self
        """
        import matplotlib.pyplot as plt

        stages = list(self.losses)
        if ax is None:
            fig, ax = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4), squeeze=False)
            ax = ax[0]
        axes = np.atleast_1d(ax)
        if len(axes) != len(stages):
            raise ValueError(f"Need {len(stages)} axes (one per stage); got {len(axes)}.")
        for panel, stage in zip(axes, stages):
            for method, values in self.losses[stage].items():
                (line,) = panel.plot(self.ratios, np.nanmedian(values, axis=0), marker="o",
                                     markersize=3, label=method)
                if spread == "minmax" and values.shape[0] > 1:
                    panel.fill_between(self.ratios, np.nanmin(values, 0), np.nanmax(values, 0),
                                       color=line.get_color(), alpha=0.15, linewidth=0)
            if self.dense_loss is not None:
                panel.axhline(self.dense_loss, color="black", linestyle="--", linewidth=1, label="dense")
            panel.set_title(_STAGE_TITLES.get(stage, stage))
            panel.set_xlabel("pruning ratio")
            panel.set_ylabel(self.loss_name)
            if logy:
                panel.set_yscale("log")
            panel.grid(alpha=0.3)
            panel.legend(fontsize=8)
        self.axes_ = axes
        self.figure_ = axes[0].figure
        self.figure_.tight_layout()
        return self
