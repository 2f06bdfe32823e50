"""Reproduce Section 4 of Ballini et al. (arXiv:2602.20467) with the project's estimators.

For every task (digits 64-32-32-10, digits upsampled to 28x28 784-32-32-10, and the
diffusion-sorption PDE with 68-32-32-32-1 and 68-64-32-32-16-16-1 at noise 0, 0.005, 0.01),
every pruning method, ratio and seed, it fits the estimator twice:

- ``stage="pruned"``: 15 epochs dense, prune (``finetune_epochs=0``): test loss right after
  pruning;
- ``stage="finetuned"``: 15 epochs dense, prune, 15 epochs fine-tuning.

Baselines: ``narrow_dense``, a dense network whose hidden widths are all scaled by one factor
so that its weight count matches the pruned network's nonzero count (trained 15 epochs for
the "pruned" panel, 30 for the "finetuned" panel); ``dense`` (15 epochs) and ``dense_30ep``
(30 epochs, the total training of a pruned and fine-tuned network), stage ``"dense"``.

Run from the repository root::

    python benchmarks/reproduce_paper.py --full     # the issue's configuration (hours on CPU)
    python benchmarks/reproduce_paper.py            # the reduced run of benchmarks/RESULTS.md
    python benchmarks/reproduce_paper.py --quick    # a few minutes
    python benchmarks/reproduce_paper.py --tiny --out-dir /tmp/x   # seconds (the tests)
    python benchmarks/reproduce_paper.py --plot-only   # figures and tables from the CSV

Outputs (``--out-dir``, default ``benchmarks/results``): ``results.csv`` (one row per task,
seed, method, ratio and stage), one PNG per task drawn with
:meth:`sk_ecprune.PruningCurveDisplay.from_results`, and ``summary.md`` (tables).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).with_name("results")
METHODS = ("ec", "nonlinear", "magnitude", "gradient_magnitude", "random", "obd")
ALL_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
CSV_COLUMNS = [
    "task", "dataset", "architecture", "noise", "seed", "method", "ratio", "stage", "loss",
    "loss_clean", "accuracy", "n_weights", "n_weights_dense", "sparsity", "max_epochs",
    "finetune_epochs", "batch_size", "hidden_layer_sizes", "n_train", "n_test", "fit_time_s",
]


# ----------------------------------------------------------------------------- tasks


def classification_task(name, dataset, *, seeds, ratios, methods=METHODS, hidden=(32, 32),
                        nonlinear_seeds=None, nonlinear_ratios=None, epochs=15, batch_size=32,
                        n_rows=None):
    return dict(name=name, kind="classification", dataset=dataset, hidden=tuple(hidden),
                noise=None, seeds=list(seeds), ratios=list(ratios), methods=list(methods),
                nonlinear_seeds=nonlinear_seeds, nonlinear_ratios=nonlinear_ratios,
                epochs=epochs, batch_size=batch_size, n_rows=n_rows)


def pde_task(hidden, noise, *, seeds, ratios, methods=METHODS, nonlinear_seeds=None,
             nonlinear_ratios=None, n_simulations=100, epochs=15, batch_size=128):
    arch = "-".join(str(h) for h in (68, *hidden, 1))
    return dict(name=f"pde_{arch}_noise{noise:g}", kind="regression", dataset="diffusion_sorption",
                hidden=tuple(hidden), noise=noise, seeds=list(seeds), ratios=list(ratios),
                methods=list(methods), nonlinear_seeds=nonlinear_seeds,
                nonlinear_ratios=nonlinear_ratios, epochs=epochs, batch_size=batch_size,
                n_simulations=n_simulations)


PDE_SMALL, PDE_WIDE = (32, 32, 32), (64, 32, 32, 16, 16)


def configuration(mode):
    """The list of tasks of a mode: ``full`` (the issue), ``run`` (RESULTS.md), ``quick``, ``tiny``."""
    seeds5 = range(5)
    if mode == "full":
        kw = dict(seeds=seeds5, ratios=ALL_RATIOS)
        return [classification_task("digits", "digits", **kw),
                classification_task("digits28", "digits28", **kw)] + [
            pde_task(h, noise, **kw) for h in (PDE_SMALL, PDE_WIDE) for noise in (0, 0.005, 0.01)]
    if mode == "run":
        # Reduced to fit about an hour on 2 shared CPU cores (see benchmarks/RESULTS.md):
        # the PDE data has 40 simulations instead of 100 and 3 seeds instead of 5; nonlinear
        # (|W| forward passes over the training set per fit) runs on fewer seeds and ratios.
        pde = dict(seeds=range(3), ratios=ALL_RATIOS, n_simulations=40, nonlinear_seeds=[0],
                   nonlinear_ratios=(0.5, 0.8, 0.95))
        return [
            classification_task("digits", "digits", seeds=seeds5, ratios=ALL_RATIOS),
            classification_task("digits28", "digits28", seeds=seeds5, ratios=ALL_RATIOS,
                                nonlinear_seeds=[0, 1]),
            pde_task(PDE_SMALL, 0.0, **pde),
            pde_task(PDE_WIDE, 0.0, **pde),
            pde_task(PDE_SMALL, 0.01, **pde),
            pde_task(PDE_WIDE, 0.01, **pde),
            pde_task(PDE_SMALL, 0.005, **pde),
            pde_task(PDE_WIDE, 0.005, **pde),
        ]
    if mode == "quick":
        return [classification_task("digits", "digits", seeds=range(2), ratios=(0.5, 0.8, 0.95)),
                pde_task(PDE_SMALL, 0.0, seeds=[0], ratios=(0.5, 0.9), n_simulations=8)]
    if mode == "tiny":
        return [classification_task("digits", "digits", seeds=[0], ratios=(0.5, 0.9),
                                    methods=("ec", "magnitude"), epochs=1, n_rows=300)]
    raise ValueError(f"Unknown mode {mode!r}.")


# ------------------------------------------------------------------------------ data


def load_task_data(task):
    """(X_train, X_test, y_train, y_test, y_test_clean) for a task, split with a fixed seed."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if task["kind"] == "classification":
        if task["dataset"] == "digits":
            from sklearn.datasets import load_digits

            X, y = load_digits(return_X_y=True)
            X = (X / 16.0).astype(np.float32)
        else:
            from sk_ecprune.datasets import load_digits_28x28

            X, y = load_digits_28x28(return_X_y=True)
        if task.get("n_rows"):
            X, y = X[: task["n_rows"]], y[: task["n_rows"]]
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y,
                                                  random_state=0)
        return X_tr, X_te, y_tr, y_te, None
    from sk_ecprune.datasets import make_diffusion_sorption

    n_sim = task["n_simulations"]
    X, y, groups = make_diffusion_sorption(n_samples=n_sim, noise=task["noise"],
                                           return_groups=True, random_state=0)
    y_clean = y
    if task["noise"]:
        # Same seed, noise drawn last: identical X and clean target (see the generator).
        _, y_clean = make_diffusion_sorption(n_samples=n_sim, random_state=0)
    train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0)
                       .split(X, y, groups))
    return X[train], X[test], y[train], y[test], y_clean[test]


# ------------------------------------------------------------------------- estimators


def n_weights(n_in, hidden, n_out):
    sizes = [n_in, *hidden, n_out]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def narrow_widths(n_in, hidden, n_out, target):
    """Hidden widths ``max(1, round(alpha * h))`` whose weight count is closest to ``target``.

    ``alpha`` solves ``n_weights(alpha * hidden) = target`` for real widths (a quadratic in
    alpha, solved by bisection); the rounded candidates around it are then compared by their
    exact counts, so the match is the best one reachable with uniform scaling.
    """
    def count(alpha):
        sizes = [n_in, *(alpha * h for h in hidden), n_out]
        return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    best = None
    for alpha in np.linspace(0.8 * lo, 1.2 * lo + 1e-9, 81):
        widths = tuple(max(1, round(alpha * h)) for h in hidden)
        err = abs(n_weights(n_in, widths, n_out) - target)
        if best is None or err < best[0]:
            best = (err, widths)
    return best[1]


def make_estimator(task, **params):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sk_ecprune import PrunedMLPClassifier, PrunedMLPRegressor

    base = dict(hidden_layer_sizes=task["hidden"], activation="prelu", optimizer="adam",
                lr=1e-3, max_epochs=task["epochs"], finetune_epochs=task["epochs"],
                batch_size=task["batch_size"], scope="global")
    if "output_metric" in PrunedMLPClassifier().get_params():
        # the paper's EC: one shot, Euclidean metric on the logits (not the EC+ defaults)
        base.update(output_metric="euclidean", prune_steps=1, gradual=False)
    base.update(params)
    if task["kind"] == "classification":
        return PrunedMLPClassifier(**base)
    return make_pipeline(StandardScaler(), PrunedMLPRegressor(**base))


def memory_supported():
    from sk_ecprune import PrunedMLPClassifier

    return "memory" in PrunedMLPClassifier().get_params()


def jobs_for(task):
    """(method, ratio, seed, stage) of every fit of a task, cheapest baselines first."""
    jobs = []
    for seed in task["seeds"]:
        jobs += [("dense", 0.0, seed, "dense"), ("dense_30ep", 0.0, seed, "dense")]
        for ratio in task["ratios"]:
            jobs += [("narrow_dense", ratio, seed, stage) for stage in ("pruned", "finetuned")]
    for method in task["methods"]:
        seeds, ratios = task["seeds"], task["ratios"]
        if method == "nonlinear":
            seeds = task["nonlinear_seeds"] if task["nonlinear_seeds"] is not None else seeds
            ratios = task["nonlinear_ratios"] if task["nonlinear_ratios"] is not None else ratios
        jobs += [(method, r, s, stage) for s in seeds for r in ratios
                 for stage in ("pruned", "finetuned")]
    return jobs


def run_job(task, data, job, memory=None, threads=1):
    """Fit one configuration and return its CSV row."""
    import torch
    from sklearn.metrics import accuracy_score, log_loss, mean_squared_error

    torch.set_num_threads(threads)
    X_tr, X_te, y_tr, y_te, y_te_clean = data
    method, ratio, seed, stage = job
    epochs = task["epochs"]
    n_in = X_tr.shape[1]
    n_out = len(np.unique(y_tr)) if task["kind"] == "classification" else 1
    dense_count = n_weights(n_in, task["hidden"], n_out)
    hidden = task["hidden"]
    params = dict(random_state=int(seed))
    if method == "dense":
        params.update(prune_ratio=0.0, finetune_epochs=0)
    elif method == "dense_30ep":
        params.update(prune_ratio=0.0, finetune_epochs=0, max_epochs=2 * epochs)
    elif method == "narrow_dense":
        hidden = narrow_widths(n_in, task["hidden"], n_out, (1 - ratio) * dense_count)
        params.update(hidden_layer_sizes=hidden, prune_ratio=0.0, finetune_epochs=0,
                      max_epochs=epochs if stage == "pruned" else 2 * epochs)
    else:
        params.update(prune_ratio=ratio, method=method,
                      finetune_epochs=0 if stage == "pruned" else epochs)
    if memory is not None:
        params["memory"] = memory
    estimator = make_estimator(task, **params)
    start = time.perf_counter()
    estimator.fit(X_tr, y_tr)
    elapsed = time.perf_counter() - start
    final = estimator[-1] if hasattr(estimator, "steps") else estimator
    linears = [m for m in final.net_.module_.modules() if isinstance(m, torch.nn.Linear)]
    nonzero = sum(int((m.weight != 0).sum()) for m in linears)
    row = dict(task=task["name"], dataset=task["dataset"],
               architecture="-".join(str(h) for h in (n_in, *task["hidden"], n_out)),
               noise=task["noise"], seed=seed, method=method, ratio=ratio, stage=stage,
               n_weights=nonzero, n_weights_dense=dense_count,
               sparsity=1 - nonzero / dense_count, max_epochs=final.max_epochs,
               finetune_epochs=final.finetune_epochs, batch_size=final.batch_size,
               hidden_layer_sizes="-".join(map(str, hidden)), n_train=len(X_tr),
               n_test=len(X_te), fit_time_s=round(elapsed, 3), loss_clean=None, accuracy=None)
    if task["kind"] == "classification":
        proba = estimator.predict_proba(X_te)
        row["loss"] = log_loss(y_te, proba, labels=final.classes_)
        row["accuracy"] = accuracy_score(y_te, final.classes_[proba.argmax(1)])
    else:
        pred = estimator.predict(X_te)
        row["loss"] = mean_squared_error(y_te, pred)
        row["loss_clean"] = mean_squared_error(y_te_clean, pred)
    return row


# ------------------------------------------------------------------------------- run


def run_task(task, n_jobs, memory_dir, log):
    from joblib import Parallel, delayed

    data = load_task_data(task)
    jobs = jobs_for(task)
    memory = None
    if memory_dir is not None and memory_supported():
        memory = os.path.join(memory_dir, task["name"])
    log(f"[{task['name']}] {len(jobs)} fits, n_train={len(data[0])}, n_test={len(data[1])}, "
        f"memory={'on' if memory else 'off'}")
    start = time.perf_counter()
    rows = Parallel(n_jobs=n_jobs, verbose=0)(
        delayed(run_job)(task, data, job, memory) for job in jobs)
    log(f"[{task['name']}] done in {time.perf_counter() - start:.0f} s")
    return rows


def write_rows(path, rows, append):
    import pandas as pd

    frame = pd.DataFrame(rows, columns=CSV_COLUMNS)
    frame.to_csv(path, mode="a" if append else "w", header=not append, index=False)


# --------------------------------------------------------------------- plots, tables


def plot_task(frame, task_name, path, loss_column="loss"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sk_ecprune import PruningCurveDisplay

    rows = frame[frame.task == task_name]
    arch = rows.architecture.iloc[0]
    classification = rows.accuracy.notna().any()
    methods = [m for m in (*METHODS, "narrow_dense") if m in set(rows.method)]
    display = PruningCurveDisplay.from_results(
        rows, loss_column=loss_column, methods=methods,
        loss_name="test loss (cross-entropy)" if classification else "test loss (MSE)")
    display.figure_.set_size_inches(11, 4)
    noise = rows.noise.iloc[0]
    extra = "" if (noise is None or (isinstance(noise, float) and math.isnan(noise))) \
        else f", noise {noise:g}"
    seeds = rows.seed.nunique()
    fewer = [f"{m} {n}" for m, n in rows[rows.stage != "dense"].groupby("method").seed.nunique()
             .items() if n < seeds]
    note = f" ({', '.join(fewer)})" if fewer else ""
    display.figure_.suptitle(f"{task_name}: {arch}{extra} — median and min–max over "
                             f"{seeds} seeds{note}", fontsize=10)
    display.figure_.tight_layout()
    display.figure_.savefig(path, dpi=72)
    plt.close(display.figure_)


def _fmt(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3g}" if abs(value) >= 1e-3 else f"{value:.2e}"


KEY_RATIOS = (0.5, 0.8, 0.9)


def key_table(frame, ratios=KEY_RATIOS):
    """Markdown: one line per task and stage, median test loss of EC, magnitude, nonlinear,
    the best other baseline and the dense networks at a few ratios."""
    out = ["| task | stage | dense 15 / 30 ep | " + " | ".join(
        f"r={r:g}: ec / magnitude / nonlinear / best other" for r in ratios) + " |",
        "|---|---|---|" + "---|" * len(ratios)]
    for task_name, rows in frame.groupby("task", sort=False):
        dense = rows[rows.stage == "dense"].groupby("method").loss.median()
        for stage in ("pruned", "finetuned"):
            table = rows[rows.stage == stage].pivot_table(index="method", columns="ratio",
                                                          values="loss", aggfunc="median")
            cells = []
            for r in ratios:
                if r not in table.columns:
                    cells.append("–")
                    continue
                col = table[r]
                others = col.drop([m for m in ("ec", "magnitude", "nonlinear")
                                   if m in col.index]).dropna()
                best = f"{_fmt(others.min())} ({others.idxmin()})" if len(others) else "–"
                cells.append(" / ".join(_fmt(col.get(m)) for m in ("ec", "magnitude",
                                                                    "nonlinear")) + f" / {best}")
            out.append(f"| {task_name} | {stage} | {_fmt(dense.get('dense'))} / "
                       f"{_fmt(dense.get('dense_30ep'))} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def summary_tables(frame):
    """Markdown: per task, median test loss per method and ratio, and EC's paired wins."""
    out = ["### Key numbers (median test loss over seeds)\n", key_table(frame)]
    for task_name, rows in frame.groupby("task", sort=False):
        arch = rows.architecture.iloc[0]
        seeds = sorted(int(s) for s in rows.seed.unique())
        out.append(f"### {task_name} ({arch}, seeds {seeds})\n")
        dense = rows[rows.stage == "dense"].groupby("method").loss.median()
        out.append("Dense baselines (median test loss): " + ", ".join(
            f"{m} {_fmt(v)}" for m, v in dense.items()) + "\n")
        curves = rows[rows.stage.isin(["pruned", "finetuned"])]
        for method, sub in curves.groupby("method", sort=False):
            m_seeds = sorted(int(s) for s in sub.seed.unique())
            m_ratios = sorted(float(r) for r in sub.ratio.unique())
            if m_seeds != seeds or len(m_ratios) != curves.ratio.nunique():
                out.append(f"*{method} was run on seeds {m_seeds} at ratios {m_ratios} only: "
                           "its medians are over those seeds; compare it with EC in the paired "
                           "table.*\n")
        for stage in ("pruned", "finetuned"):
            sub = rows[rows.stage == stage]
            table = sub.pivot_table(index="method", columns="ratio", values="loss",
                                    aggfunc="median")
            order = [m for m in ("ec",) + tuple(m for m in METHODS if m != "ec") + ("narrow_dense",)
                     if m in table.index]
            table = table.loc[order]
            title = "right after pruning" if stage == "pruned" else "after fine-tuning"
            out.append(f"**Median test loss, {title}**\n")
            out.append("| method | " + " | ".join(f"{r:g}" for r in table.columns) + " |")
            out.append("|---|" + "---|" * len(table.columns))
            for method, values in table.iterrows():
                out.append(f"| {method} | " + " | ".join(_fmt(v) for v in values) + " |")
            out.append("")
            ec = sub[sub.method == "ec"].set_index(["seed", "ratio"]).loss
            lines = []
            for method in [m for m in order if m != "ec"]:
                other = sub[sub.method == method].set_index(["seed", "ratio"]).loss
                cells = []
                for ratio in table.columns:
                    pairs = [(ec.get((s, ratio)), other.get((s, ratio))) for s in seeds]
                    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
                    if not pairs:
                        cells.append("–")
                        continue
                    wins = sum(a < b for a, b in pairs)
                    rel = np.median([a / b for a, b in pairs])
                    cells.append(f"{wins}/{len(pairs)} ({rel:.2f})")
                lines.append(f"| ec vs {method} | " + " | ".join(cells) + " |")
            out.append(f"EC against each baseline, {title}: seeds where EC's loss is lower / "
                       "seeds compared (median of EC's loss ÷ baseline's loss)\n")
            out.append("| | " + " | ".join(f"{r:g}" for r in table.columns) + " |")
            out.append("|---|" + "---|" * len(table.columns))
            out += lines
            out.append("")
        if rows.accuracy.notna().any():
            acc = rows[rows.stage != "dense"].pivot_table(index=["stage", "method"],
                                                           columns="ratio", values="accuracy",
                                                           aggfunc="median")
            out.append("**Median test accuracy**\n")
            out.append("| stage, method | " + " | ".join(f"{r:g}" for r in acc.columns) + " |")
            out.append("|---|" + "---|" * len(acc.columns))
            for (stage, method), values in acc.iterrows():
                out.append(f"| {stage}, {method} | " + " | ".join(
                    "–" if math.isnan(v) else f"{v:.3f}" for v in values) + " |")
            dense_acc = rows[rows.stage == "dense"].groupby("method").accuracy.median()
            out.append("\nDense accuracy: " + ", ".join(
                f"{m} {v:.3f}" for m, v in dense_acc.items()) + "\n")
    return "\n".join(out)


def make_outputs(out_dir, log, plot=None, tables=None):
    """One PNG per task and ``summary.md`` from ``out_dir/results.csv``.

    ``plot(frame, task_name, path)`` and ``tables(frame) -> str`` default to this script's
    :func:`plot_task` and :func:`summary_tables` (``ec_plus.py`` passes its own).
    """
    import pandas as pd

    frame = pd.read_csv(out_dir / "results.csv")
    for task_name in frame.task.unique():
        path = out_dir / f"{task_name}.png"
        (plot or plot_task)(frame, task_name, path)
        log(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    (out_dir / "summary.md").write_text((tables or summary_tables)(frame))
    log(f"wrote {out_dir / 'summary.md'}")


# ------------------------------------------------------------------------------ main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_const", const="full", dest="mode",
                      help="the issue's configuration: all tasks, 5 seeds, 10 ratios")
    mode.add_argument("--quick", action="store_const", const="quick", dest="mode",
                      help="a few minutes: digits and a small PDE set")
    mode.add_argument("--tiny", action="store_const", const="tiny", dest="mode",
                      help="seconds: 300 digits, 1 seed, 2 ratios, ec and magnitude, 1 epoch")
    parser.set_defaults(mode="run")
    parser.add_argument("--tasks", nargs="+", help="only these task names")
    parser.add_argument("--seeds", type=int, help="override: use seeds 0..SEEDS-1")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel fits (joblib)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--memory-dir", default=None,
                        help="cache of dense training stages, if the estimators have memory= "
                             "(default: a temporary directory)")
    parser.add_argument("--plot-only", action="store_true",
                        help="only redraw the figures and tables from OUT_DIR/results.csv")
    args = parser.parse_args(argv)

    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    log_lines = []

    def log(message):
        print(message, flush=True)
        log_lines.append(message)

    if args.plot_only:
        make_outputs(out_dir, log)
        return 0
    tasks = configuration(args.mode)
    if args.tasks:
        unknown = set(args.tasks) - {t["name"] for t in tasks}
        if unknown:
            parser.error(f"unknown tasks {sorted(unknown)}; choose from "
                         f"{[t['name'] for t in tasks]}")
        tasks = [t for t in tasks if t["name"] in args.tasks]
    if args.seeds:
        for t in tasks:
            t["seeds"] = list(range(args.seeds))
    import sklearn
    import skorch
    import torch

    log(f"mode={args.mode} tasks={[t['name'] for t in tasks]} n_jobs={args.n_jobs} "
        f"python {platform.python_version()} torch {torch.__version__} skorch "
        f"{skorch.__version__} sklearn {sklearn.__version__}, {os.cpu_count()} cpu(s)")
    start = time.perf_counter()
    csv_path = out_dir / "results.csv"
    with tempfile.TemporaryDirectory() as tmp:
        memory_dir = args.memory_dir or tmp
        for index, task in enumerate(tasks):
            rows = run_task(task, args.n_jobs, memory_dir, log)
            write_rows(csv_path, rows, append=index > 0)
    log(f"total wall time {time.perf_counter() - start:.0f} s")
    make_outputs(out_dir, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
