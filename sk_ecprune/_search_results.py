"""Curves out of a finished search's ``cv_results_``: one per combination of the other
varied parameters, the per-fold scores of each candidate along one numeric parameter.

Used by :meth:`sk_ecprune.PruningCurveDisplay.from_cv_results`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from sklearn.base import is_classifier, is_regressor
from sklearn.exceptions import NotFittedError

__all__ = ["SearchCurves", "search_curves"]


@dataclass
class SearchCurves:
    """What a display needs: x values, ``{label: (n_splits, n_x) array}``, names."""

    x: list
    curves: dict
    score_name: str
    x_key: str


def search_curves(search, x="prune_ratio", metric=None):
    """Read the curves of ``x`` out of a fitted search.

    Parameters
    ----------
    search : fitted GridSearchCV, RandomizedSearchCV or successive-halving search
    x : str, default="prune_ratio"
        The parameter on the horizontal axis: its name, or its name inside a pipeline
        (``"prunedmlpclassifier__prune_ratio"``); a bare name matches the one key of
        ``params`` that ends in ``"__" + x``.
    metric : str, default=None
        With several scorers, which one; by default the one ``refit`` names.

    Returns
    -------
    SearchCurves
        Scores as losses where the scorer is a ``neg_*`` one (the sign flipped back).
    """
    results = getattr(search, "cv_results_", None)
    if results is None:
        raise NotFittedError(
            f"{type(search).__name__} has no cv_results_: fit the search before "
            "PruningCurveDisplay.from_cv_results(search)."
        )
    metric = _metric(search, results, metric)
    sign, score_name = _sign_and_name(search, metric)
    params = list(results["params"])
    x_key = _x_key(params, x)
    rows = [i for i, p in enumerate(params) if x_key in p]
    others = _varied_keys(params, rows, x_key)
    n_splits = int(search.n_splits_)
    xs = sorted({_number(params[i][x_key], x_key) for i in rows})
    curves = {}
    for i in rows:  # later rows win: a halving search's last (largest) evaluation
        label = _label(params[i], others) or score_name
        values = curves.setdefault(label, np.full((n_splits, len(xs)), np.nan))
        column = xs.index(_number(params[i][x_key], x_key))
        values[:, column] = [sign * float(results[f"split{k}_test_{metric}"][i])
                             for k in range(n_splits)]
    return SearchCurves(xs, curves, score_name, x_key)


def _metric(search, results, metric):
    """The suffix of the ``mean_test_*`` column to read (``"score"`` for one scorer)."""
    names = [k.removeprefix("mean_test_") for k in results if k.startswith("mean_test_")]
    if metric is None:
        if names == ["score"]:
            return "score"
        if isinstance(search.refit, str) and search.refit in names:
            return search.refit
        raise ValueError(f"The search has several metrics {names}; pass metric=<one of them>.")
    if metric not in names:
        raise ValueError(f"metric={metric!r} is not in the search's results; it has {names}.")
    return metric


def _sign_and_name(search, metric):
    """+1 or -1 (a ``neg_*`` scorer, plotted as the positive loss), and the axis label."""
    scoring = search.scoring
    if isinstance(scoring, dict):
        scoring = scoring.get(metric, metric)
    elif isinstance(scoring, (list, tuple, set)):
        scoring = metric
    if scoring is None:  # the estimator's own score method
        estimator = search.estimator
        return 1.0, "accuracy" if is_classifier(estimator) else (
            "R²" if is_regressor(estimator) else "score")
    if not isinstance(scoring, str):  # a callable
        return 1.0, metric if metric != "score" else "score"
    if scoring.startswith("neg_"):
        return -1.0, scoring.removeprefix("neg_").replace("_", " ")
    return 1.0, "R²" if scoring == "r2" else scoring.replace("_", " ")


def _x_key(params, x):
    keys = list(dict.fromkeys(k for p in params for k in p))
    if x in keys:
        return x
    matches = [k for k in keys if k.endswith("__" + x)]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"x={x!r} matches several parameters {matches}; pass one of them.")
    raise ValueError(
        f"x={x!r} is not a parameter the search varied; its parameters are {keys}. Search "
        f"over {x!r} (e.g. GridSearchCV(est, {{{x!r}: [0.5, 0.7, 0.9]}})), or pass x=<one of "
        "them>."
    )


def _number(value, key):
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"x must be a numeric parameter; {key} takes {value!r}.")


def _varied_keys(params, rows, x_key):
    """Parameters other than x whose value differs between the rows (or is missing in some)."""
    keys = list(dict.fromkeys(k for i in rows for k in params[i] if k != x_key))
    missing = object()
    return [k for k in keys if len({repr(params[i].get(k, missing)) for i in rows}) > 1]


def _label(param, keys):
    """``"method=ec, lr=0.01"``: a pipeline prefix dropped where the short names stay distinct."""
    short = [k.rpartition("__")[2] for k in keys]
    names = short if len(set(short)) == len(short) else keys
    return ", ".join(f"{name}={_format(param[key])}" for name, key in zip(names, keys)
                     if key in param)


def _format(value):
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return f"{value:g}"
    text = repr(value)
    return text if len(text) <= 30 else type(value).__name__
