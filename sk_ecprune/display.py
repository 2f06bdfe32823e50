"""Loss against pruning ratio, one line per method, in scikit-learn's Display style."""

from __future__ import annotations

from itertools import product

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone, is_classifier
from sklearn.metrics import check_scoring

from ._search_results import search_curves

STAGES = ("pruned", "finetuned")
_SET_PARAMS = ("prune_ratio", "method", "random_state", "finetune_epochs")
_SPREADS = ("minmax", "std", "none")
_CENTERS = ("median", "mean")
_STAGE_TITLES = {"pruned": "right after pruning", "finetuned": "after fine-tuning",
                 "cv": "cross-validation (mean ± std over folds)"}
# Words of a metric's name that mark a loss: positive, spanning orders of magnitude across
# ratios, hence drawn on a log axis; any other metric (accuracy, R², F1, ...) on a linear one.
_LOSS_WORDS = ("loss", "error", "deviance", "brier", "mse", "mae")


def _pruning_prefix(estimator):
    """The ``set_params`` prefix of the pruned MLP in ``estimator`` ('' or e.g. 'mlp__').

    The MLP is the (nested) step that owns ``prune_ratio``; every parameter set by the display
    goes to that step, so that e.g. a ``PCA(random_state=...)`` earlier in a Pipeline is left
    alone.
    """
    params = estimator.get_params()
    keys = [k for k in params if k == "prune_ratio" or k.endswith("__prune_ratio")]
    prefixes = [k[: -len("prune_ratio")] for k in keys]
    prefixes = [p for p in prefixes if all(p + n in params for n in _SET_PARAMS)]
    if not prefixes:
        raise ValueError(
            f"{type(estimator).__name__} has no parameters {list(_SET_PARAMS)}; "
            "PruningCurveDisplay needs a PrunedMLPRegressor/PrunedMLPClassifier or a pipeline "
            "ending in one."
        )
    return min(prefixes, key=len)


def _fit_and_score(estimator, params, X, y, X_test, y_test, scorer):
    fitted = clone(estimator).set_params(**params).fit(X, y)
    return scorer(fitted, X_test, y_test)


class PruningCurveDisplay:
    """Test loss (or any score) against pruning ratio, per method and stage.

    Build it with :meth:`from_estimator` (refits clones of an estimator),
    :meth:`from_cv_results` (a finished ``GridSearchCV`` or ``RandomizedSearchCV``) or
    :meth:`from_results` (a table of already measured runs), then call :meth:`plot`.

    Parameters
    ----------
    ratios : array-like of shape (n_ratios,)
    losses : dict
        ``losses[stage][method]`` is an array of shape (n_seeds, n_ratios).
    dense_loss : float, dict of str to float, or None
        Loss of the unpruned network, drawn as a horizontal line in every panel; a dict
        draws one line per entry (e.g. the dense network trained for 15 and for 30 epochs).
    loss_name : str
        Label of the vertical axis; a name with "loss" or "error" in it is drawn on a
        logarithmic axis by default, any other (accuracy, R², ...) on a linear one.
    x_label : str, default="pruning ratio"
        Label of the horizontal axis.
    center : {"median", "mean"}, default="median"
        Statistic over the rows of each array drawn as the line (seeds, or folds).

    Attributes
    ----------
    figure_ : matplotlib Figure
    axes_ : ndarray of matplotlib Axes, one per stage
    lines_ : dict
        ``lines_[stage][method]`` is the matplotlib Line2D of that curve.
    """

    def __init__(self, ratios, losses, *, dense_loss=None, loss_name="test loss",
                 x_label="pruning ratio", center="median"):
        if center not in _CENTERS:
            raise ValueError(f"center must be one of {_CENTERS}; got {center!r}.")
        self.ratios = np.asarray(ratios, dtype=float)
        self.losses = losses
        self.dense_loss = dense_loss
        self.loss_name = loss_name
        self.x_label = x_label
        self.center = center

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
        yscale=None,
    ):
        """Refit clones of ``estimator`` at every ratio, method and seed, and plot the curves.

        Parameters
        ----------
        estimator : PrunedMLPRegressor, PrunedMLPClassifier, or a Pipeline ending in one
            Not modified. Each clone keeps the estimator's other parameters and gets
            ``prune_ratio``, ``method``, ``random_state`` and, for the ``"pruned"`` stage,
            ``finetune_epochs=0`` (set on the pruned MLP's step inside a pipeline). The dense
            reference is a clone with ``prune_ratio=0`` and ``finetune_epochs=0``. With the
            estimator's ``memory`` set, clones of one seed reuse one trained dense network.
        X, y : array-like
            Training data of every clone.
        X_test, y_test : array-like, default=None
            Data the loss is measured on; the training data if None.
        ratios : float or array-like of float, default=(0.1, 0.3, 0.5, 0.7, 0.9)
            Pruning ratios, the horizontal axis.
        methods : str or list of str, default=("ec", "magnitude")
            Scoring methods, one line each.
        stages : str or subset of ("pruned", "finetuned"), default=("pruned", "finetuned")
            One panel each: right after pruning, and after fine-tuning.
        scoring : str or callable, default=None
            A scikit-learn scorer. By default log-loss for classifiers and mean squared error
            for regressors; a ``neg_*`` scorer is plotted as the positive loss.
        seeds : int or list of int, default=(0,)
            ``random_state`` of the clones; the lines are medians over seeds and the bands
            their spread.
        n_jobs : int, default=None
            Fits run in parallel with joblib.
        ax : matplotlib Axes or array of Axes, default=None
            One per stage; a new figure if None.
        yscale : str, default=None
            Scale of the vertical axis (see :meth:`plot`); by default logarithmic for a
            loss and linear for a score such as ``scoring="accuracy"``.

        Returns
        -------
        display : PruningCurveDisplay
            With ``losses``, ``dense_loss``, ``figure_``, ``axes_`` and ``lines_``.
        """
        if isinstance(stages, str):
            stages = (stages,)
        stages = tuple(stages)
        unknown = set(stages) - set(STAGES)
        if unknown or not stages:
            raise ValueError(
                f"Unknown stages {sorted(unknown)}; expected a non-empty subset of {STAGES}."
            )
        ratios = [float(r) for r in np.atleast_1d(ratios)]
        methods = [methods] if isinstance(methods, str) else list(methods)
        seeds = [int(seeds)] if np.isscalar(seeds) else list(seeds)
        if scoring is None:
            scoring = "neg_log_loss" if is_classifier(estimator) else "neg_mean_squared_error"
        scorer = check_scoring(estimator, scoring=scoring)
        X_test, y_test = (X, y) if X_test is None else (X_test, y_test)
        prefix = _pruning_prefix(estimator)
        keys = {name: prefix + name for name in _SET_PARAMS}
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
        dense_loss = float(np.median(sign * np.asarray(scores[len(jobs):])))
        display = cls(ratios, losses, dense_loss=dense_loss, loss_name=name)
        return display.plot(ax=ax, yscale=yscale)

    @classmethod
    def from_cv_results(cls, search, x="prune_ratio", *, metric=None, ax=None, plot=True,
                        yscale=None):
        """The curve of a finished search: its cross-validated score against ``x``.

        One line per combination of the search's other varied parameters (``method``,
        ``granularity``, ...; the legend names them), at the mean over the folds, with a
        band of one standard deviation: ``mean_test_score`` and ``std_test_score`` of
        ``cv_results_``. Nothing is refitted.

        Parameters
        ----------
        search : fitted GridSearchCV, RandomizedSearchCV or HalvingGridSearchCV
            Over ``x`` and any other parameters, of an estimator or a pipeline. A
            candidate that successive halving evaluated several times is drawn with its
            last (largest) evaluation.
        x : str, default="prune_ratio"
            The numeric parameter on the horizontal axis, by its name or by its full name
            in a pipeline (``"mlp__prune_ratio"``).
        metric : str, default=None
            With several scorers (``scoring={...}``), the one to draw; by default the one
            ``refit`` names.
        ax : matplotlib Axes, default=None
            A new figure if None.
        plot : bool, default=True
            Draw at once; False returns the display without drawing.
        yscale : str, default=None
            Scale of the vertical axis. By default linear for a score (the estimator's own
            accuracy or R², ``"f1"``, ...) and logarithmic for a ``neg_*`` loss, which is
            drawn with its sign flipped back (``"neg_log_loss"`` as the log loss).

        Returns
        -------
        display : PruningCurveDisplay
            ``losses["cv"][label]`` holds the per-fold scores, shape (n_splits, n_x), NaN
            where a combination was not evaluated at some ``x``; ``center="mean"``.

        Examples
        --------
        >>> search = GridSearchCV(PrunedMLPClassifier(random_state=0),  # doctest: +SKIP
        ...                       {"prune_ratio": [0.5, 0.8, 0.9], "method": ["ec_obs",
        ...                       "magnitude"]}, cv=3).fit(X, y)
        >>> PruningCurveDisplay.from_cv_results(search)  # doctest: +SKIP
        """
        curves = search_curves(search, x=x, metric=metric)
        x_label = "pruning ratio" if x == "prune_ratio" else curves.x_key
        display = cls(curves.x, {"cv": curves.curves}, loss_name=curves.score_name,
                      x_label=x_label, center="mean")
        return display.plot(ax=ax, yscale=yscale) if plot else display

    @classmethod
    def from_results(
        cls,
        results,
        *,
        loss_column="loss",
        dense_loss=None,
        methods=None,
        loss_name=None,
        ax=None,
        plot=True,
        yscale=None,
    ):
        """Build the display from a table of measured runs, e.g. a benchmark's CSV.

        Parameters
        ----------
        results : pandas DataFrame or list of dict
            One row per run with columns ``stage`` ("pruned" or "finetuned"), ``method``,
            ``seed``, ``ratio`` and ``loss_column``. Rows of stage ``"dense"`` (ratio ignored)
            give the horizontal reference lines, one per ``method`` value, at their median
            over seeds, unless ``dense_loss`` is given. Rows of other stages are ignored. A
            method measured at fewer ratios or seeds than the others is drawn where measured.
        loss_column : str, default="loss"
            Column plotted; also the axis label.
        dense_loss : float, dict of str to float, or None, default=None
            Reference lines; overrides the ``"dense"`` rows.
        methods : list of str, default=None
            Methods to draw, in this order; all by default (in order of appearance).
        loss_name : str, default=None
            Label of the loss axis; ``loss_column`` with spaces for underscores if None.
        ax : matplotlib Axes or array of Axes, default=None
            One per stage present; see :meth:`plot`.
        plot : bool, default=True
            Draw at once; False returns the display without drawing.
        yscale : str, default=None
            Scale of the vertical axis (see :meth:`plot`).

        Returns
        -------
        display : PruningCurveDisplay
        """
        rows = results.to_dict("records") if hasattr(results, "to_dict") else list(results)
        missing = {"stage", "method", "seed", "ratio", loss_column} - set(rows[0] if rows else ())
        if not rows or missing:
            raise ValueError(
                f"results needs columns stage, method, seed, ratio and {loss_column!r}; "
                f"missing {sorted(missing) or 'all (no rows)'}. For the cv_results_ of a "
                "finished GridSearchCV or RandomizedSearchCV, use "
                "PruningCurveDisplay.from_cv_results(search) instead."
            )
        curve_rows = [r for r in rows if r["stage"] in STAGES]
        if not curve_rows:
            raise ValueError(f"results has no rows of stage {STAGES}.")
        if methods is not None:
            methods = [methods] if isinstance(methods, str) else list(methods)
            curve_rows = [r for r in curve_rows if r["method"] in methods]
        ratios = sorted({float(r["ratio"]) for r in curve_rows})
        seeds = sorted({r["seed"] for r in curve_rows})
        table = {(r["stage"], r["method"], r["seed"], float(r["ratio"])): float(r[loss_column])
                 for r in curve_rows}
        losses = {}
        for stage in [s for s in STAGES if any(r["stage"] == s for r in curve_rows)]:
            present = list(dict.fromkeys(r["method"] for r in curve_rows if r["stage"] == stage))
            order = [m for m in methods if m in present] if methods is not None else present
            losses[stage] = {
                m: np.array([[table.get((stage, m, s, q), np.nan) for q in ratios] for s in seeds])
                for m in order
            }
        if dense_loss is None:
            dense = {}
            for r in rows:
                if r["stage"] == "dense":
                    dense.setdefault(r["method"], []).append(float(r[loss_column]))
            dense_loss = {m: float(np.median(v)) for m, v in dense.items()} or None
        if loss_name is None:
            loss_name = loss_column.replace("_", " ")
        display = cls(ratios, losses, dense_loss=dense_loss, loss_name=loss_name)
        return display.plot(ax=ax, yscale=yscale) if plot else display

    def plot(self, ax=None, *, yscale=None, spread=None):
        """Draw one panel per stage: median (or mean) over seeds per method, with its spread.

        Parameters
        ----------
        ax : matplotlib Axes or array of Axes, default=None
            One per stage; a new figure if None.
        yscale : str, default=None
            Any of matplotlib's scales (``"linear"``, ``"log"``, ``"symlog"``, ...). None
            chooses from ``loss_name``: ``"log"`` for a loss or an error (they span orders
            of magnitude across ratios) when every value is positive, ``"linear"`` for
            anything else (accuracy, R², a score).
        spread : {"minmax", "std", "none"}, default=None
            Band around each line: min to max over seeds, the center ± one standard
            deviation, or none; None is ``"std"`` for ``center="mean"`` and ``"minmax"``
            otherwise. Drawn only where a method has more than one seed.

        Returns
        -------
        self : PruningCurveDisplay
        """
        import matplotlib.pyplot as plt

        if spread is None:
            spread = "std" if self.center == "mean" else "minmax"
        if spread not in _SPREADS:
            raise ValueError(f"spread must be one of {_SPREADS}; got {spread!r}.")
        stages = list(self.losses)
        if ax is None:
            _, ax = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4), squeeze=False)
        axes = np.ravel(np.asarray(ax, dtype=object))
        if len(axes) != len(stages):
            raise ValueError(f"Need {len(stages)} axes (one per stage: {stages}); got {len(axes)}.")
        dense = self.dense_loss
        if dense is not None and not isinstance(dense, dict):
            dense = {"dense": float(dense)}
        dense_styles = ("--", ":", "-.")
        # one colour per method in every panel, even where a panel lacks some methods
        methods = list(dict.fromkeys(m for stage in stages for m in self.losses[stage]))
        cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
        colors = {m: cycle[i % len(cycle)] for i, m in enumerate(methods)}
        self.lines_ = {}
        for panel, stage in zip(axes, stages):
            self.lines_[stage] = {}
            for method, values in self.losses[stage].items():
                values = np.atleast_2d(np.asarray(values, dtype=float))
                measured = ~np.all(np.isnan(values), axis=0)  # ratios this method was run at
                x, v = self.ratios[measured], values[:, measured]
                center = np.nanmean(v, 0) if self.center == "mean" else np.nanmedian(v, 0)
                (line,) = panel.plot(x, center, marker="o", markersize=3,
                                     label=method, color=colors[method])
                self.lines_[stage][method] = line
                n_seeds = (~np.isnan(v)).sum(0)
                if spread != "none" and v.size and n_seeds.max() > 1:
                    if spread == "minmax":
                        low, high = np.nanmin(v, 0), np.nanmax(v, 0)
                    else:
                        std = np.nanstd(v, 0)
                        low, high = center - std, center + std
                    panel.fill_between(x, low, high, color=line.get_color(), alpha=0.15,
                                       linewidth=0)
            for k, (label, value) in enumerate((dense or {}).items()):
                panel.axhline(value, color="black", linewidth=1,
                              linestyle=dense_styles[k % len(dense_styles)], label=label)
            panel.set_title(_STAGE_TITLES.get(stage, stage))
            panel.set_xlabel(self.x_label)
            panel.set_ylabel(self.loss_name)
            panel.set_yscale(yscale or self._default_yscale())
            panel.grid(alpha=0.3)
            panel.legend(fontsize=8)
        self.axes_ = axes
        self.figure_ = axes[0].figure
        self.figure_.tight_layout()
        return self

    def _default_yscale(self):
        """``"log"`` for a loss whose values are all positive, ``"linear"`` otherwise."""
        name = str(self.loss_name).lower()
        values = [np.asarray(v, dtype=float) for per_method in self.losses.values()
                  for v in per_method.values()]
        values = np.concatenate([v.ravel() for v in values]) if values else np.array([])
        values = values[~np.isnan(values)]
        positive = values.size > 0 and bool(np.all(values > 0))
        return "log" if positive and any(w in name for w in _LOSS_WORDS) else "linear"
