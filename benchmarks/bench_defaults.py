"""The defaults a scikit-learn user meets (issue #22, part 3): the package's estimators against
scikit-learn's MLP with its own defaults and the same hidden layers, cross-validated.

Each task is cross-validated with the same folds for every estimator (3-fold, shuffled,
``random_state=0``; stratified for classifiers); inputs as a user would give them: digits
``/ 16``, breast cancer, diabetes and Friedman 1 behind a ``StandardScaler`` (the same
pipeline for every estimator). Hidden layers (64, 64). Every fit records its test score, its
training loss (log-loss or MSE on its training fold) next to the test loss, and its wall time
(one torch thread, fits one after another).

Configurations of the package's estimators (``CONFIGS``), each at ``prune_ratio=0`` (dense)
and ``0.8``: ``defaults`` (the estimator's defaults) and candidate defaults.

Run from the repository root::

    flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_defaults.py   # RESULTS.md
    python benchmarks/bench_defaults.py --tiny --out-dir /tmp/x                # the tests
    python benchmarks/bench_defaults.py --plot-only

Outputs (``--out-dir``, default ``benchmarks/results/defaults``): ``results.csv`` (one row per
fold and configuration) and ``summary.md``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from _common import RESULTS_DIR, Log, environment_line, fmt, parser, select_tasks, shown, \
    write_rows

OUT_DIR = RESULTS_DIR / "defaults"
HIDDEN = (64, 64)
#: Configuration -> parameters of the package's estimator (on top of its defaults).
CONFIGS = {
    "defaults": {},
    "relu_b200": dict(activation="relu", batch_size=200),
    "relu_b200_e100": dict(activation="relu", batch_size=200, max_epochs=100,
                           finetune_epochs=50),
    "relu_b200_es": dict(activation="relu", batch_size=200, max_epochs=200,
                         finetune_epochs=100, early_stopping=True),
}
CSV_COLUMNS = ["task", "estimator", "config", "prune_ratio", "fold", "score", "test_loss",
               "train_loss", "fit_time_s", "n_iter"]


def configuration(mode):
    if mode == "run":
        return [dict(name=n, n_rows=None) for n in ("digits", "breast_cancer", "diabetes",
                                                    "friedman1")]
    if mode == "tiny":
        return [dict(name="digits", n_rows=300)]
    raise ValueError(f"Unknown mode {mode!r}.")


def load(task):
    """(X, y, classification, needs_scaler)."""
    from sklearn import datasets

    name = task["name"]
    if name == "digits":
        X, y = datasets.load_digits(return_X_y=True)
        X, classification, scale = X / 16.0, True, False
    elif name == "breast_cancer":
        (X, y), classification, scale = datasets.load_breast_cancer(return_X_y=True), True, True
    elif name == "diabetes":
        (X, y), classification, scale = datasets.load_diabetes(return_X_y=True), False, True
    else:
        X, y = datasets.make_friedman1(n_samples=1000, noise=1.0, random_state=0)
        classification, scale = False, True
    if task["n_rows"]:
        X, y = X[: task["n_rows"]], y[: task["n_rows"]]
    return X.astype(np.float32), y, classification, scale


def make(estimator, config, ratio, classification, scale, seed, tiny):
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sk_ecprune import PrunedMLPClassifier, PrunedMLPRegressor

    if estimator == "sklearn":
        cls = MLPClassifier if classification else MLPRegressor
        model = cls(hidden_layer_sizes=HIDDEN, random_state=seed,
                    **(dict(max_iter=5) if tiny else {}))
    else:
        cls = PrunedMLPClassifier if classification else PrunedMLPRegressor
        params = dict(CONFIGS[config], hidden_layer_sizes=HIDDEN, prune_ratio=ratio,
                      random_state=seed)
        if tiny:
            params.update(max_epochs=2, finetune_epochs=2)
        model = cls(**params)
    return make_pipeline(StandardScaler(), model) if scale else model


def losses(model, X, y, classification):
    from sklearn.metrics import log_loss, mean_squared_error

    if classification:
        return log_loss(y, model.predict_proba(X), labels=np.unique(y))
    return mean_squared_error(y, model.predict(X))


def run_task(task, configs, log, tiny=False):
    import torch
    from sklearn.model_selection import KFold, StratifiedKFold

    torch.set_num_threads(1)
    X, y, classification, scale = load(task)
    folds = (StratifiedKFold if classification else KFold)(3, shuffle=True, random_state=0)
    runs = [("sklearn", "defaults", 0.0)] + [("sk_ecprune", c, r) for c in configs
                                             for r in (0.0, 0.8)]
    rows = []
    for fold, (train, test) in enumerate(folds.split(X, y)):
        for estimator, config, ratio in runs:
            model = make(estimator, config, ratio, classification, scale, fold, tiny)
            start = time.perf_counter()
            model.fit(X[train], y[train])
            elapsed = time.perf_counter() - start
            final = model[-1] if hasattr(model, "steps") else model
            rows.append(dict(task=task["name"], estimator=estimator, config=config,
                             prune_ratio=ratio, fold=fold, score=model.score(X[test], y[test]),
                             test_loss=losses(model, X[test], y[test], classification),
                             train_loss=losses(model, X[train], y[train], classification),
                             fit_time_s=elapsed, n_iter=final.n_iter_))
        log(f"[{task['name']}] fold {fold} done")
    return rows


def summary_tables(frame):
    out = []
    for task, rows in frame.groupby("task", sort=False):
        sk = rows[rows.estimator == "sklearn"]
        ref_score, ref_time = sk.score.mean(), sk.fit_time_s.mean()
        out += [f"### {task} ({rows.fold.nunique()}-fold CV; score: "
                f"{'accuracy' if task in ('digits', 'breast_cancer') else 'R²'})\n",
                "| estimator | config | prune_ratio | score (mean) | test loss / train loss "
                "(mean) | fit time (s) | time / sklearn's | epochs |",
                "|---|---|---:|---:|---|---:|---:|---:|"]
        for (est, config, ratio), sub in rows.groupby(["estimator", "config", "prune_ratio"],
                                                      sort=False):
            out.append(f"| {est} | {config} | {ratio:g} | {sub.score.mean():.4f} | "
                       f"{fmt(sub.test_loss.mean())} / {fmt(sub.train_loss.mean())} | "
                       f"{sub.fit_time_s.mean():.2f} | {sub.fit_time_s.mean() / ref_time:.2f} | "
                       f"{sub.n_iter.mean():.0f} |")
        out.append(f"\nscikit-learn's MLP: score {ref_score:.4f}.\n")
    return "\n".join(out)


def main(argv=None):
    cli = parser(__doc__.splitlines()[0], {"tiny": "seconds"})
    cli.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    cli.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = cli.parse_args(argv)
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Log()
    if not args.plot_only:
        tasks = select_tasks(configuration(args.mode), args.tasks, cli)
        log(f"mode={args.mode} tasks={[t['name'] for t in tasks]} " + environment_line())
        start = time.perf_counter()
        for index, task in enumerate(tasks):
            rows = run_task(task, args.configs, log, tiny=args.mode == "tiny")
            write_rows(out_dir / "results.csv", rows, CSV_COLUMNS, append=index > 0)
        log(f"total wall time {time.perf_counter() - start:.0f} s")
    import pandas as pd

    (out_dir / "summary.md").write_text(summary_tables(pd.read_csv(out_dir / "results.csv")))
    log(f"wrote {shown(out_dir / 'summary.md')}")
    if not args.plot_only:
        log.write(out_dir / "run.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
