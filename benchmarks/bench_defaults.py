"""The defaults a scikit-learn user meets (issue #22, part 3): the package's estimators against
scikit-learn's MLP with its own defaults and the same hidden layers, cross-validated.

Each task is cross-validated with the same folds for every estimator (3-fold, shuffled,
``random_state=0``; stratified for classifiers; the PDE surrogate's folds keep each simulation
whole, ``GroupKFold``); inputs as a user would give them: digits ``/ 16``, breast cancer, wine,
diabetes, Friedman 1 (1,000 rows, noise 1) and the diffusion-sorption surrogate (30
simulations, 19,200 x 68) behind a ``StandardScaler`` (the same pipeline for every estimator). Hidden layers (64, 64). Every fit records its test score, its
training loss (log-loss or MSE on its training fold) next to the test loss, and its wall time
(one torch thread and one BLAS thread, fits one after another).

Configurations of the package's estimators (``CONFIGS``), each at ``prune_ratio=0`` (dense)
and ``0.8`` unless marked: ``defaults`` (the estimator's defaults), ``paper`` (the paper's
protocol, the defaults until issue #22) and the defaults with one thing changed (activation,
weight penalty, fine-tuning epochs, scikit-learn's absolute ``tol``, a standardised target).

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
#: The paper's protocol (the defaults until issue #22), as ``reproduce_paper.py`` and the
#: EC+ benchmarks pass it.
PAPER = dict(activation="prelu", batch_size=32, max_epochs=15, finetune_epochs=15,
             n_iter_no_change=None, weight_decay=0.0)
#: Configuration -> parameters of the package's estimator (on top of its defaults: ReLU,
#: batch "auto", up to 200 + 50 epochs stopped by the training loss with a relative tol,
#: weight_decay 1e-4). Keys starting with "_" are the benchmark's: ``_ratios`` (default both
#: 0 and 0.8), ``_kinds`` (``"classification"``/``"regression"``: only those tasks),
#: ``_scale_target`` (the regressor behind a ``TransformedTargetRegressor`` with a
#: ``StandardScaler``), ``_tol_mode`` (``"abs"``: scikit-learn's absolute ``tol``, by setting
#: the module constant for the fit).
CONFIGS = {
    "defaults": {},
    "paper": PAPER,
    "prelu": dict(activation="prelu"),
    "no_weight_decay": dict(weight_decay=0.0),
    "weight_decay_1e-3": dict(weight_decay=1e-3, _ratios=(0.0,)),
    "finetune_20": dict(finetune_epochs=20),
    "absolute_tol": dict(_tol_mode="abs", _ratios=(0.0,), _kinds=("regression",)),
    "scaled_target": dict(_scale_target=True, _kinds=("regression",)),
}
CSV_COLUMNS = ["task", "estimator", "config", "prune_ratio", "fold", "score", "test_loss",
               "train_loss", "fit_time_s", "n_iter"]
TASKS = ("digits", "breast_cancer", "wine", "diabetes", "friedman1", "pde")
CLASSIFICATION = ("digits", "breast_cancer", "wine")
#: Simulations of the PDE surrogate (640 rows each) and the rows kept.
PDE_SIMULATIONS, PDE_ROWS = 30, 19_200


def configuration(mode):
    if mode == "run":
        return [dict(name=n, n_rows=None) for n in TASKS]
    if mode == "tiny":
        return [dict(name="digits", n_rows=300), dict(name="pde", n_rows=300)]
    raise ValueError(f"Unknown mode {mode!r}.")


def load(task):
    """(X, y, groups, classification, needs_scaler); ``groups`` are the PDE's simulations
    (the folds never split one), else None."""
    from sklearn import datasets

    from sk_ecprune.datasets import make_diffusion_sorption

    name, groups = task["name"], None
    if name == "digits":
        X, y = datasets.load_digits(return_X_y=True)
        X, scale = X / 16.0, False
    elif name == "breast_cancer":
        (X, y), scale = datasets.load_breast_cancer(return_X_y=True), True
    elif name == "wine":
        (X, y), scale = datasets.load_wine(return_X_y=True), True
    elif name == "diabetes":
        (X, y), scale = datasets.load_diabetes(return_X_y=True), True
    elif name == "friedman1":
        X, y = datasets.make_friedman1(n_samples=1000, noise=1.0, random_state=0)
        scale = True
    else:
        X, y, groups = make_diffusion_sorption(n_samples=PDE_SIMULATIONS, return_groups=True,
                                               random_state=0)
        scale = True
    if task["n_rows"]:
        rows = np.random.default_rng(0).permutation(len(X))[: task["n_rows"]]
        rows = rows if name == "pde" else np.arange(task["n_rows"])
        X, y = X[rows], y[rows]
        groups = None if groups is None else groups[rows]
    return X.astype(np.float32), y, groups, name in CLASSIFICATION, scale


def applies(config, ratio, classification):
    params = CONFIGS[config]
    kind = "classification" if classification else "regression"
    return ratio in params.get("_ratios", (0.0, 0.8)) and kind in params.get(
        "_kinds", ("classification", "regression"))


def make(estimator, config, ratio, classification, scale, seed, tiny):
    from sklearn.compose import TransformedTargetRegressor
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
        options = CONFIGS[config]
        params = dict({k: v for k, v in options.items() if not k.startswith("_")},
                      hidden_layer_sizes=HIDDEN, prune_ratio=ratio, random_state=seed)
        if tiny:
            params.update(max_epochs=2, finetune_epochs=2)
        model = cls(**params)
        if options.get("_scale_target"):
            model = TransformedTargetRegressor(model, transformer=StandardScaler())
    return make_pipeline(StandardScaler(), model) if scale else model


def fit_timed(model, X, y, tol_mode):
    """Fit ``model``; its wall time. ``tol_mode``: the stopping rule's, for this fit only."""
    from sk_ecprune.estimators import _build

    saved = _build.TOL_MODE
    _build.TOL_MODE = tol_mode or saved
    try:
        start = time.perf_counter()
        model.fit(X, y)
        return time.perf_counter() - start
    finally:
        _build.TOL_MODE = saved


def epochs_run(model):
    final = model[-1] if hasattr(model, "steps") else model
    final = getattr(final, "regressor_", final)  # TransformedTargetRegressor
    return final.n_iter_


def losses(model, X, y, classification):
    from sklearn.metrics import log_loss, mean_squared_error

    if classification:
        return log_loss(y, model.predict_proba(X), labels=np.unique(y))
    return mean_squared_error(y, model.predict(X))


def run_task(task, configs, log, tiny=False):
    import torch
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    torch.set_num_threads(1)
    X, y, groups, classification, scale = load(task)
    if groups is not None:
        splits = GroupKFold(3).split(X, y, groups)
    else:
        splits = (StratifiedKFold if classification else KFold)(
            3, shuffle=True, random_state=0).split(X, y)
    runs = [("sklearn", "defaults", 0.0)] + [("sk_ecprune", c, r) for c in configs
                                             for r in (0.0, 0.8)
                                             if applies(c, r, classification)]
    rows = []
    for fold, (train, test) in enumerate(splits):
        for estimator, config, ratio in runs:
            model = make(estimator, config, ratio, classification, scale, fold, tiny)
            elapsed = fit_timed(model, X[train], y[train],
                                CONFIGS[config].get("_tol_mode") if estimator != "sklearn"
                                else None)
            rows.append(dict(task=task["name"], estimator=estimator, config=config,
                             prune_ratio=ratio, fold=fold, score=model.score(X[test], y[test]),
                             test_loss=losses(model, X[test], y[test], classification),
                             train_loss=losses(model, X[train], y[train], classification),
                             fit_time_s=elapsed, n_iter=epochs_run(model)))
        log(f"[{task['name']}] fold {fold} done")
    return rows


def summary_tables(frame):
    out = []
    for task, rows in frame.groupby("task", sort=False):
        sk = rows[rows.estimator == "sklearn"]
        ref_score, ref_time = sk.score.mean(), sk.fit_time_s.mean()
        out += [f"### {task} ({rows.fold.nunique()}-fold CV; score: "
                f"{'accuracy' if task in CLASSIFICATION else 'R²'})\n",
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
    out += ["### Targets of issue #22 with the defaults\n", *target_table(frame)]
    return "\n".join(out)


def target_checks(rows, classification):
    """``(dense score, pruned score, time ratios)`` of the ``defaults`` rows of one task, each
    with whether it meets issue #22's target against scikit-learn's MLP: dense score at least
    scikit-learn's; pruned at 0.8 within 1% of its accuracy or 10% of its test loss; mean fit
    time at most 1.5x scikit-learn's."""
    sk = rows[rows.estimator == "sklearn"]
    ours = rows[(rows.estimator == "sk_ecprune") & (rows.config == "defaults")]
    dense, pruned = ours[ours.prune_ratio == 0], ours[ours.prune_ratio == 0.8]
    if classification:
        pruned_ok = pruned.score.mean() >= 0.99 * sk.score.mean()
    else:
        pruned_ok = pruned.test_loss.mean() <= 1.1 * sk.test_loss.mean()
    times = [part.fit_time_s.mean() / sk.fit_time_s.mean() for part in (dense, pruned)]
    return ((dense.score.mean(), dense.score.mean() >= sk.score.mean()),
            (pruned.score.mean(), pruned_ok), [(t, t <= 1.5) for t in times])


def target_table(frame):
    lines = ["| task | scikit-learn | dense (r = 0) | pruned (r = 0.8) | time r = 0 / r = 0.8 "
             "(x scikit-learn's) |", "|---|---:|---:|---:|---|"]
    mark = {True: "met", False: "**missed**"}
    for task, rows in frame.groupby("task", sort=False):
        if not (rows.config == "defaults").any():
            continue
        sk = rows[rows.estimator == "sklearn"].score.mean()
        (dense, dense_ok), (pruned, pruned_ok), times = target_checks(
            rows, task in CLASSIFICATION)
        lines.append(f"| {task} | {sk:.4f} | {dense:.4f} ({mark[dense_ok]}) | {pruned:.4f} "
                     f"({mark[pruned_ok]}) | "
                     + " / ".join(f"{t:.2f} ({mark[ok]})" for t, ok in times) + " |")
    return lines


def main(argv=None):
    cli = parser(__doc__.splitlines()[0], {"tiny": "seconds"})
    cli.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    cli.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = cli.parse_args(argv)
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Log()
    if not args.plot_only:
        from threadpoolctl import threadpool_limits

        tasks = select_tasks(configuration(args.mode), args.tasks, cli)
        log(f"mode={args.mode} tasks={[t['name'] for t in tasks]} " + environment_line())
        start = time.perf_counter()
        # one thread for numpy's BLAS (scikit-learn's MLP) as for torch: on a shared machine
        # threads waiting for a busy core distort the comparison more than they speed it up
        with threadpool_limits(1):
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
