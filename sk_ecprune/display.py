"""Loss against pruning ratio, one line per method, in scikit-learn's Display style."""

from __future__ import annotations

from itertools import product

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone, is_classifier
from sklearn.metrics import check_scoring

STAGES = ("pruned", "finetuned")
_SET_PARAMS = ("prune_ratio", "method", "random_state", "finetune_epochs")
_SPREADS = ("minmax", "std", "none")
_STAGE_TITLES = {"pruned": "right after pruning", "finetuned": "after fine-tuning"}


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

    Build it with :meth:`from_estimator` (refits clones of an estimator) or
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
        Label of the vertical axis.

    Attributes
    ----------
    figure_ : matplotlib Figure
    axes_ : ndarray of matplotlib Axes, one per stage
    lines_ : dict
        ``lines_[stage][method]`` is the matplotlib Line2D of that curve.
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
        return display.plot(ax=ax)

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

        Returns
        -------
        display : PruningCurveDisplay
        """
        rows = results.to_dict("records") if hasattr(results, "to_dict") else list(results)
        missing = {"stage", "method", "seed", "ratio", loss_column} - set(rows[0] if rows else ())
        if not rows or missing:
            raise ValueError(
                f"results needs columns stage, method, seed, ratio and {loss_column!r}; "
                f"missing {sorted(missing) or 'all (no rows)'}."
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
        return display.plot(ax=ax) if plot else display

    def plot(self, ax=None, *, logy=True, spread="minmax"):
        """Draw one panel per stage: median over seeds per method, with its spread.

        Parameters
        ----------
        ax : matplotlib Axes or array of Axes, default=None
            One per stage; a new figure if None.
        logy : bool, default=True
            Logarithmic loss axis (losses span orders of magnitude across ratios).
        spread : {"minmax", "std", "none"}, default="minmax"
            Band around each line: min to max over seeds, median ± one standard deviation,
            or none. Drawn only where a method has more than one seed.

        Returns
        -------
        self : PruningCurveDisplay
        """
        import matplotlib.pyplot as plt

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
                (line,) = panel.plot(x, np.nanmedian(v, axis=0), marker="o", markersize=3,
                                     label=method, color=colors[method])
                self.lines_[stage][method] = line
                n_seeds = (~np.isnan(v)).sum(0)
                if spread != "none" and v.size and n_seeds.max() > 1:
                    if spread == "minmax":
                        low, high = np.nanmin(v, 0), np.nanmax(v, 0)
                    else:
                        mid, std = np.nanmedian(v, 0), np.nanstd(v, 0)
                        low, high = mid - std, mid + std
                    panel.fill_between(x, low, high, color=line.get_color(), alpha=0.15,
                                       linewidth=0)
            for k, (label, value) in enumerate((dense or {}).items()):
                panel.axhline(value, color="black", linewidth=1,
                              linestyle=dense_styles[k % len(dense_styles)], label=label)
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
