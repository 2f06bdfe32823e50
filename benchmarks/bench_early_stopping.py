"""Early stopping (issue #15): the pruned estimators with and without it, against
scikit-learn's MLP with early stopping and against the dense network, on small tabular data.

Tasks: diabetes (regression, 442 rows), breast cancer (classification, 569), wine
(classification, 178) and the diffusion-sorption surrogate (regression, 40 simulations),
each split 75/25 (stratified for the classifiers; by simulation for the PDE), inputs
standardised (and the regression targets, with ``TransformedTargetRegressor``). Networks
(32, 32), Adam lr 1e-3, batch 32; the package's estimators train 100 dense epochs and fine-tune
100 (enough to overfit without early stopping), scikit-learn's MLP up to 200 epochs. For each
of 5 seeds:

- ``sklearn_mlp_es``: scikit-learn's ``MLPRegressor``/``MLPClassifier``, same widths,
  ``early_stopping=True`` (``validation_fraction=0.1``, ``n_iter_no_change=10``);
- ``dense`` / ``dense_es``: the package's estimator with ``prune_ratio=0``, without / with
  early stopping;
- ``pruned_r{r}`` / ``pruned_r{r}_es``: the default method and schedule at r = 0.5 and
  0.8, without / with early stopping (the same ``validation_fraction=0.1``, ``n_iter_no_change=10``).

Scores: test R^2 for regression, test log-loss and accuracy for classification, and the
epochs run. Run from the repository root::

    python benchmarks/bench_early_stopping.py            # the run of benchmarks/RESULTS.md
    python benchmarks/bench_early_stopping.py --tiny --out-dir /tmp/x   # seconds (the tests)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from _common import RESULTS_DIR, Log, environment_line, fmt, run_parallel, write_rows

OUT_DIR = RESULTS_DIR / "early_stopping"
TASKS = ("diabetes", "breast_cancer", "wine", "pde")
CSV_COLUMNS = ["task", "seed", "config", "score", "log_loss", "accuracy", "train_score",
               "n_iter", "sparsity", "fit_time_s"]


def load(task):
    """(X_train, X_test, y_train, y_test, kind) with a fixed 75/25 split."""
    from sklearn import datasets
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if task == "pde":
        from sk_ecprune.datasets import make_diffusion_sorption

        X, y, groups = make_diffusion_sorption(n_samples=40, noise=0.01, return_groups=True,
                                               random_state=0)
        train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0)
                           .split(X, y, groups))
        return X[train], X[test], y[train], y[test], "regression"
    X, y = getattr(datasets, f"load_{task}")(return_X_y=True)
    kind = "regression" if task == "diabetes" else "classification"
    stratify = None if kind == "regression" else y
    return (*train_test_split(X, y, test_size=0.25, stratify=stratify, random_state=0), kind)


def configs(epochs):
    common = dict(hidden_layer_sizes=(32, 32), lr=1e-3, batch_size=32, max_epochs=epochs,
                  finetune_epochs=epochs, activation="prelu", weight_decay=0.0,
                  n_iter_no_change=None)  # the settings of the run recorded in RESULTS.md
    es = dict(early_stopping=True, validation_fraction=0.1, n_iter_no_change=10)
    out = {"sklearn_mlp_es": "sklearn", "dense": dict(common, prune_ratio=0.0),
           "dense_es": dict(common, prune_ratio=0.0, **es)}
    for ratio in (0.5, 0.8):
        out[f"pruned_r{ratio:g}"] = dict(common, prune_ratio=ratio)
        out[f"pruned_r{ratio:g}_es"] = dict(common, prune_ratio=ratio, **es)
    return out


def make(kind, config, params, seed, epochs):
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sk_ecprune import PrunedMLPClassifier, PrunedMLPRegressor

    if params == "sklearn":
        cls = MLPRegressor if kind == "regression" else MLPClassifier
        model = cls(hidden_layer_sizes=(32, 32), learning_rate_init=1e-3, batch_size=32,
                    max_iter=2 * epochs, early_stopping=True, random_state=seed)
    else:
        cls = PrunedMLPRegressor if kind == "regression" else PrunedMLPClassifier
        model = cls(**params, random_state=seed)
    model = make_pipeline(StandardScaler(), model)
    if kind == "regression":
        model = TransformedTargetRegressor(regressor=model, transformer=StandardScaler())
    return model


def run_job(task, data, job, epochs):
    from sklearn.metrics import accuracy_score, log_loss, r2_score

    config, params, seed = job
    X_tr, X_te, y_tr, y_te, kind = data
    model = make(kind, config, params, seed, epochs)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning
        model.fit(X_tr, y_tr)
    elapsed = time.perf_counter() - start
    final = model.regressor_[-1] if kind == "regression" else model[-1]
    row = dict(task=task, seed=seed, config=config, fit_time_s=elapsed,
               n_iter=final.n_iter_, sparsity=getattr(final, "sparsity_", 0.0),
               log_loss=None, accuracy=None)
    if kind == "regression":
        row["score"] = r2_score(y_te, model.predict(X_te))
        row["train_score"] = r2_score(y_tr, model.predict(X_tr))
    else:
        proba = model.predict_proba(X_te)
        row["log_loss"] = log_loss(y_te, proba, labels=final.classes_)
        row["accuracy"] = row["score"] = accuracy_score(y_te, model.predict(X_te))
        row["train_score"] = accuracy_score(y_tr, model.predict(X_tr))
    return row


def summary(frame):
    """Markdown: median over seeds per task and configuration."""
    out = ["| task | config | test score | test log-loss | train score | epochs | sparsity |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for (task, config), rows in frame.groupby(["task", "config"], sort=False):
        out.append(f"| {task} | {config} | {rows.score.median():.3f} | "
                   f"{fmt(rows.log_loss.median())} | {rows.train_score.median():.3f} | "
                   f"{rows.n_iter.median():.0f} | {rows.sparsity.median():.2f} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--tiny", action="store_true", help="seconds: 1 seed, 3 epochs, 2 tasks")
    cli.add_argument("--n-jobs", type=int, default=2)
    cli.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = cli.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    log = Log()
    epochs, seeds, tasks = (3, [0], ("wine", "diabetes")) if args.tiny else (100, range(5), TASKS)
    log(f"epochs={epochs} seeds={list(seeds)} tasks={list(tasks)} " + environment_line())
    rows = []
    for task in tasks:
        data = load(task)
        jobs = [(c, p, s) for c, p in configs(epochs).items() for s in seeds]
        start = time.perf_counter()
        rows += run_parallel(run_job, task, data, jobs, args.n_jobs, epochs=epochs)
        log(f"[{task}] {len(jobs)} fits in {time.perf_counter() - start:.0f} s")
    write_rows(args.out_dir / "results.csv", rows, CSV_COLUMNS, append=False)
    import pandas as pd

    table = summary(pd.read_csv(args.out_dir / "results.csv"))
    (args.out_dir / "summary.md").write_text(table)
    log(table)
    log.write(args.out_dir / "run.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
