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

import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    PDE_SMALL,
    PDE_WIDE,
    RESULTS_DIR,
    Log,
    architecture,
    classification_task,
    environment_line,
    fit_and_score,
    fmt,
    load_task_data,
    make_outputs,
    n_weights,
    narrow_widths,
    parser,
    pde_task,
    run_parallel,
    select_tasks,
    write_rows,
)

METHODS = ("ec", "nonlinear", "magnitude", "gradient_magnitude", "random", "obd")
ALL_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
CSV_COLUMNS = [
    "task", "dataset", "architecture", "noise", "seed", "method", "ratio", "stage", "loss",
    "loss_clean", "accuracy", "n_weights", "n_weights_dense", "sparsity", "max_epochs",
    "finetune_epochs", "batch_size", "hidden_layer_sizes", "n_train", "n_test", "fit_time_s",
]


# ----------------------------------------------------------------------------- tasks


def configuration(mode):
    """The list of tasks of a mode: ``full`` (the issue), ``run`` (RESULTS.md), ``quick``, ``tiny``."""
    tasks = _configuration(mode)
    for task in tasks:
        task["methods"] = task["methods"] or list(METHODS)
    return tasks


def _configuration(mode):
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


# ------------------------------------------------------------------------------ jobs


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

    X_tr, X_te, y_tr, _, _ = data
    method, ratio, seed, stage = job
    epochs = task["epochs"]
    n_in = X_tr.shape[1]
    n_out = len(np.unique(y_tr)) if task["kind"] == "classification" else 1
    dense_count = n_weights(n_in, task["hidden"], n_out)
    hidden = task["hidden"]
    params = dict(random_state=int(seed), memory=memory)
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
    final, scores = fit_and_score(task, data, params, threads)
    linears = [m for m in final.net_.module_.modules() if isinstance(m, torch.nn.Linear)]
    nonzero = sum(int((m.weight != 0).sum()) for m in linears)
    return dict(scores, task=task["name"], dataset=task["dataset"],
                architecture=architecture(data, task), noise=task["noise"], seed=seed,
                method=method, ratio=ratio, stage=stage, n_weights=nonzero,
                n_weights_dense=dense_count, sparsity=1 - nonzero / dense_count,
                max_epochs=final.max_epochs, finetune_epochs=final.finetune_epochs,
                batch_size=final.batch_size, hidden_layer_sizes="-".join(map(str, hidden)),
                n_train=len(X_tr), n_test=len(X_te), fit_time_s=round(scores["fit_time_s"], 3))


# ------------------------------------------------------------------------------- run


def run_task(task, n_jobs, memory_dir, log):
    data = load_task_data(task)
    jobs = jobs_for(task)
    memory = None if memory_dir is None else os.path.join(memory_dir, task["name"])
    log(f"[{task['name']}] {len(jobs)} fits, n_train={len(data[0])}, n_test={len(data[1])}, "
        f"memory={'on' if memory else 'off'}")
    start = time.perf_counter()
    rows = run_parallel(run_job, task, data, jobs, n_jobs, memory=memory)
    log(f"[{task['name']}] done in {time.perf_counter() - start:.0f} s")
    return rows


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
                best = f"{fmt(others.min())} ({others.idxmin()})" if len(others) else "–"
                cells.append(" / ".join(fmt(col.get(m)) for m in ("ec", "magnitude",
                                                                    "nonlinear")) + f" / {best}")
            out.append(f"| {task_name} | {stage} | {fmt(dense.get('dense'))} / "
                       f"{fmt(dense.get('dense_30ep'))} | " + " | ".join(cells) + " |")
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
            f"{m} {fmt(v)}" for m, v in dense.items()) + "\n")
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
                out.append(f"| {method} | " + " | ".join(fmt(v) for v in values) + " |")
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


# ------------------------------------------------------------------------------ main


def main(argv=None):
    cli = parser(__doc__.splitlines()[0], {
        "full": "the issue's configuration: all tasks, 5 seeds, 10 ratios",
        "quick": "a few minutes: digits and a small PDE set",
        "tiny": "seconds: 300 digits, 1 seed, 2 ratios, ec and magnitude, 1 epoch",
    })
    cli.add_argument("--seeds", type=int, help="override: use seeds 0..SEEDS-1")
    cli.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    cli.add_argument("--memory-dir", default=None,
                     help="cache of dense training stages (default: a temporary directory)")
    args = cli.parse_args(argv)
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Log()
    if args.plot_only:
        make_outputs(out_dir, log, plot_task, summary_tables)
        return 0
    tasks = select_tasks(configuration(args.mode), args.tasks, cli)
    if args.seeds:
        for t in tasks:
            t["seeds"] = list(range(args.seeds))
    log(f"mode={args.mode} tasks={[t['name'] for t in tasks]} n_jobs={args.n_jobs} "
        + environment_line())
    start = time.perf_counter()
    csv_path = out_dir / "results.csv"
    with tempfile.TemporaryDirectory() as tmp:
        memory_dir = args.memory_dir or tmp
        for index, task in enumerate(tasks):
            rows = run_task(task, args.n_jobs, memory_dir, log)
            write_rows(csv_path, rows, CSV_COLUMNS, append=index > 0)
    log(f"total wall time {time.perf_counter() - start:.0f} s")
    make_outputs(out_dir, log, plot_task, summary_tables)
    return 0


if __name__ == "__main__":
    sys.exit(main())
