"""``python -m sk_ecprune fit DATA.csv --target COLUMN``: the main job on the user's data.

Holds out ``--test-size`` of the rows (``train_test_split(X, y, test_size=...,
random_state=..., stratify=y)`` for a classification, unstratified for a regression),
fits the scaled pipeline of :mod:`._model` on the rest, with ``--cv K`` first choosing the
pruning ratio among ``--ratios`` by K-fold cross-validation, and prints the test score
(accuracy or R²) of the pruned model next to its dense network's (the same network before
pruning: ``prune_ratio=0, finetune_epochs=0`` on the same seed, read from the dense-stage
cache), the sparsity, the model's size and the time, then writes the model.
"""

import tempfile
import time

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split

from ._args import CommandError, UsageError, model_params
from ._data import infer_task, read_table
from ._model import make_model, mlp_of, mlp_prefix, pickled_size, write_model

__all__ = ["cv_folds", "resolve_task", "run_fit", "sparsest_best", "split"]


def split(table, task, test_size, random_state):
    """The held-out split ``fit`` reports on (tests recompute it from the same arguments)."""
    stratify = table.y if task == "classification" else None
    return train_test_split(table.X, table.y, test_size=test_size, random_state=random_state,
                            stratify=stratify)


def resolve_task(table, requested):
    task, why = infer_task(table)
    if requested == "auto":
        return task, f"{task} (inferred: {why}; override with --task)"
    if requested == "regression" and not table.target_is_numeric:
        raise UsageError(f"--task regression needs a numeric target; {table.target!r} is text")
    return requested, f"{requested} (--task)"


def _check_split(table, task, args):
    n_test = int(np.ceil(args.test_size * len(table.y)))
    n_train = len(table.y) - n_test
    if n_test < 1 or n_train < 2:
        raise UsageError(f"{len(table.y)} rows are too few for --test-size {args.test_size}")
    if task == "classification":
        labels, counts = np.unique(table.y, return_counts=True)
        if counts.min() < 2:
            raise UsageError(f"class {labels[counts.argmin()]!r} of {table.target!r} has a "
                             "single row: a stratified split needs two per class (or use "
                             "--task regression for a numeric target)")
    if args.cv and args.cv > n_train:
        raise UsageError(f"--cv {args.cv} needs at least {args.cv} training rows; "
                         f"there are {n_train}")


def cv_folds(task, k, random_state):
    """Shuffled K folds, stratified for a classification (a file sorted by its target
    would otherwise give folds of other distributions)."""
    kind = StratifiedKFold if task == "classification" else KFold
    return kind(k, shuffle=True, random_state=random_state)


def sparsest_best(cv_results):
    """Index of the highest prune ratio among those of the best mean score (a tie, common
    on small test folds, goes to the smaller model)."""
    scores = np.asarray(cv_results["mean_test_score"], dtype=float)
    key = next(k for k in cv_results["params"][0] if k.endswith("prune_ratio"))
    best = np.flatnonzero(scores >= np.nanmax(scores))
    return int(max(best, key=lambda i: cv_results["params"][i][key]))


def _fit(model, task, X_train, y_train, args, cache):
    """Fit ``model`` (through the search over ``--ratios`` with ``--cv``); return the fitted
    model and the search (or None)."""
    prefix = mlp_prefix(model)
    model.set_params(**{prefix + "memory": cache})
    if not args.cv:
        return model.fit(X_train, y_train), None
    folds = cv_folds(task, args.cv, args.random_state)
    search = GridSearchCV(model, {prefix + "prune_ratio": list(args.ratios)}, cv=folds,
                          refit=sparsest_best)
    search.fit(X_train, y_train)
    return search.best_estimator_, search


def _dense_score(model, X_train, y_train, X_test, y_test):
    """Test score of the dense network the fitted ``model`` was pruned from, and the epochs
    its training ran (the stopping rule decides how many)."""
    prefix = mlp_prefix(model)
    dense = clone(model).set_params(**{prefix + "prune_ratio": 0.0,
                                       prefix + "finetune_epochs": 0})
    score = dense.fit(X_train, y_train).score(X_test, y_test)
    return score, mlp_of(dense).n_iter_


def _cv_lines(search):
    results = search.cv_results_
    key = next(k for k in results["params"][0] if k.endswith("prune_ratio"))
    lines = [f"cross-validation ({search.n_splits_} folds), prune ratio: mean score ± std"]
    for params, mean, std in zip(results["params"], results["mean_test_score"],
                                 results["std_test_score"]):
        lines.append(f"  {params[key]:<6g} {mean:.4f} ± {std:.4f}")
    best = search.best_params_[key]
    lines.append(f"chosen prune ratio: {best:g} (the highest of the best mean score)")
    return lines


def run_fit(args):
    """The ``fit`` command; returns the exit status."""
    start = time.perf_counter()
    table = read_table(args.data, args.target, args.drop or ())
    task, task_note = resolve_task(table, args.task)
    _check_split(table, task, args)
    X_train, X_test, y_train, y_test = split(table, task, args.test_size, args.random_state)
    model = make_model(task, model_params(args))
    print(f"data: {args.data}: {len(table.y)} rows, {len(table.feature_names)} features "
          f"({', '.join(table.feature_names)}), target {table.target!r}: {task_note}")
    print(f"split: {len(y_train)} training rows, {len(y_test)} test rows (test size "
          f"{args.test_size:g}, random state {args.random_state}"
          f"{', stratified' if task == 'classification' else ''})", flush=True)
    with tempfile.TemporaryDirectory(prefix="sk_ecprune_cache_") as cache:
        try:
            fitted, search = _fit(model, task, X_train, y_train, args, cache)
            dense = _dense_score(fitted, X_train, y_train, X_test, y_test)
        except ValueError as exc:  # the estimators' own errors say what to change
            raise CommandError(f"the fit failed: {exc}") from exc
    fitted.set_params(**{mlp_prefix(fitted) + "memory": None})  # the cache is gone
    _report(fitted, search, task, dense, X_test, y_test, args, start)
    return 0


def _report(fitted, search, task, dense, X_test, y_test, args, start):
    mlp = mlp_of(fitted)
    for line in _cv_lines(search) if search is not None else ():
        print(line)
    metric = "accuracy" if task == "classification" else "R²"
    score = fitted.score(X_test, y_test)
    print(f"network: {mlp.n_features_in_}-{'-'.join(map(str, mlp.hidden_layer_sizes_))}-"
          f"{mlp.n_outputs_}, {mlp.activation}; method {mlp.method}, granularity "
          f"{mlp.granularity}, prune ratio {mlp.prune_ratio:g}")
    dense_score, dense_epochs = dense
    print(f"test {metric}: {score:.6f} pruned, {dense_score:.6f} dense "
          f"(before pruning, {dense_epochs} epochs)")
    nonzero = sum(int(np.count_nonzero(c)) for c in mlp.coefs_)
    print(f"sparsity: {mlp.sparsity_:.1%} of the weights removed ({nonzero} nonzero left)")
    if args.out is not None:
        try:
            size = write_model(fitted, args.out, X_test)
        except Exception as exc:  # e.g. a format that cannot hold some part of the model
            raise CommandError(f"could not write {args.out}: {type(exc).__name__}: {exc}; "
                               "the model was not saved (try another format)") from exc
        print(f"model size: {size} bytes, written to {args.out}")
    else:
        print(f"model size: {pickled_size(fitted)} bytes (pickled; --out writes a file)")
    print(f"time: {time.perf_counter() - start:.1f} s")
