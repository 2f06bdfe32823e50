"""EC+ (issue #5): pruning schedules and output metrics against one-shot and gradual magnitude.

The tasks of ``reproduce_paper.py`` (same data splits, estimator settings: 15 epochs dense,
prune, 15 epochs fine-tuning, Adam lr 1e-3, PReLU): each *configuration* is a method plus a
schedule (``prune_steps``, ``gradual``, ``layer_floor``, ``output_metric``), and every one is
measured right after pruning (``finetune_epochs=0``; not for gradual ones, whose pruning is
interleaved with training) and after fine-tuning, on the same fifteen-epoch budget. The dense
stage of a seed is trained once and shared through the estimators' ``memory`` cache.

Run from the repository root::

    python benchmarks/ec_plus.py                    # the run of benchmarks/RESULTS.md
    python benchmarks/ec_plus.py --quick            # a few minutes
    python benchmarks/ec_plus.py --tiny --out-dir /tmp/x   # seconds (the tests)
    python benchmarks/ec_plus.py --plot-only        # figures and tables from the CSV
    python benchmarks/ec_plus.py --configs NAME... --append   # add configurations to the CSV

Outputs (``--out-dir``, default ``benchmarks/results/ec_plus``): ``results.csv``, one PNG per
task (median and min-max over seeds, per configuration) and ``summary.md`` (the issue's
targets, configuration by configuration).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import (
    PDE_SMALL,
    RESULTS_DIR,
    Log,
    architecture,
    classification_task,
    environment_line,
    fit_and_score,
    fmt,
    load_task_data,
    make_outputs,
    parser,
    pde_task,
    run_dense_first,
    select_tasks,
    write_rows,
)

OUT_DIR = RESULTS_DIR / "ec_plus"
RATIOS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)

#: Configuration name -> estimator parameters. "gradual" ones only have a fine-tuned stage.
CONFIGS = {
    "magnitude": dict(method="magnitude"),
    "magnitude_gradual5": dict(method="magnitude", prune_steps=5, gradual=True),
    "magnitude_gradual15": dict(method="magnitude", prune_steps=15, gradual=True),
    "ec": dict(method="ec", output_metric="euclidean"),  # the paper's EC
    "ec_fisher": dict(method="ec", output_metric="fisher"),  # classifiers only
    "ec_iter5_euclidean": dict(method="ec", prune_steps=5, output_metric="euclidean"),  # idem
    "ec_iter5": dict(method="ec", prune_steps=5),
    "ec_iter20": dict(method="ec", prune_steps=20),
    "ec_iter20_floor": dict(method="ec", prune_steps=20, layer_floor=0.02),
    "ec_iter5_layer": dict(method="ec", prune_steps=5, scope="layer"),
    "ec_iter5_budget": dict(method="ec", prune_steps=5, scope="magnitude_budget"),
    "ec_gradual5": dict(method="ec", prune_steps=5, gradual=True),
    "ec_gradual15": dict(method="ec", prune_steps=15, gradual=True),
    "ec_gradual5_budget": dict(method="ec", prune_steps=5, gradual=True,
                               scope="magnitude_budget"),
    "ec_obs": dict(method="ec_obs"),  # issue #13: kept weights move too
    "ec_obs_gradual5": dict(method="ec_obs", prune_steps=5, gradual=True),
}
MAGNITUDE = ("magnitude", "magnitude_gradual5", "magnitude_gradual15")
#: Drawn in the figures (all are in the tables): the baselines, the paper's EC, the default
#: (``ec_iter5`` right after pruning is ``ec_gradual5`` without epochs) and the strongest others.
PLOTTED = ("magnitude", "magnitude_gradual5", "magnitude_gradual15", "ec", "ec_iter5",
           "ec_iter20", "ec_gradual5", "ec_gradual5_budget", "ec_obs", "ec_obs_gradual5")
CSV_COLUMNS = ["task", "architecture", "noise", "seed", "config", "ratio", "stage", "loss",
               "loss_clean", "accuracy", "train_loss", "sparsity", "prune_time_s", "epoch_time_s",
               "prune_epochs", "fit_time_s"]


def configuration(mode):
    """Tasks of a mode: ``run`` (RESULTS.md), ``quick`` or ``tiny``."""
    if mode == "run":
        kw = dict(seeds=range(5), ratios=RATIOS)
        return [classification_task("digits", "digits", **kw),
                classification_task("digits28", "digits28", **kw),
                pde_task(PDE_SMALL, 0.0, n_simulations=40, **kw),
                pde_task(PDE_SMALL, 0.01, n_simulations=40, **kw)]
    if mode == "quick":
        return [classification_task("digits", "digits", seeds=range(2), ratios=(0.5, 0.9)),
                pde_task(PDE_SMALL, 0.0, seeds=[0], ratios=(0.5, 0.9), n_simulations=8)]
    if mode == "tiny":
        return [classification_task("digits", "digits", seeds=[0], ratios=(0.5, 0.9),
                                       epochs=1, n_rows=300)]
    raise ValueError(f"Unknown mode {mode!r}.")


def configs_for(task, names=None):
    names = list(CONFIGS) if names is None else list(names)
    if task["kind"] == "regression":  # for squared error the Fisher metric is Euclidean
        names = [n for n in names if n not in ("ec_fisher", "ec_iter5_euclidean")]
    return names


def jobs_for(task, names=None):
    """(config, ratio, seed, stage) of every fit; ``dense`` first (it fills the cache)."""
    jobs = [("dense", 0.0, seed, "dense") for seed in task["seeds"]]
    for name in configs_for(task, names):
        stages = ("finetuned",) if CONFIGS[name].get("gradual") else ("pruned", "finetuned")
        jobs += [(name, r, s, stage) for s in task["seeds"] for r in task["ratios"]
                 for stage in stages]
    return jobs


def run_job(task, data, job, memory, threads=1):
    """Fit one configuration; return its CSV row."""
    name, ratio, seed, stage = job
    params = dict(random_state=int(seed), memory=memory)
    if name == "dense":
        params.update(prune_ratio=0.0, finetune_epochs=0)
    else:
        params.update({"output_metric": "auto", **CONFIGS[name]}, prune_ratio=ratio)
        if stage == "pruned":
            params["finetune_epochs"] = 0
    final, scores = fit_and_score(task, data, params, threads)
    epoch_time = float(np.mean([h["dur"] for h in final.history_dense_]))
    return dict(scores, task=task["name"], architecture=architecture(data, task),
                noise=task["noise"], seed=seed, config=name, ratio=ratio, stage=stage,
                sparsity=final.sparsity_, prune_time_s=final.pruning_time_,
                epoch_time_s=epoch_time, prune_epochs=final.pruning_time_ / epoch_time)


# --------------------------------------------------------------------- plots, tables


def plot_task(frame, task_name, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sk_ecprune import PruningCurveDisplay

    rows = frame[frame.task == task_name].rename(columns={"config": "method"})
    classification = rows.accuracy.notna().any()
    display = PruningCurveDisplay.from_results(
        rows, methods=[c for c in PLOTTED if c in set(rows.method)],
        loss_name="test loss (cross-entropy)" if classification else "test loss (MSE)")
    for ax in np.ravel(display.axes_):
        ax.set_yscale("log")
    display.figure_.set_size_inches(12, 4.5)
    display.figure_.suptitle(f"{task_name} ({rows.architecture.iloc[0]}): EC+ schedules vs "
                             f"magnitude, median and min-max over {rows.seed.nunique()} seeds; "
                             "default = ec_obs_gradual5 (before: ec_gradual5)", fontsize=10)
    display.figure_.tight_layout()
    display.figure_.savefig(path, dpi=72)
    plt.close(display.figure_)


def _paired(sub, name, other):
    """Per ratio: (wins of ``name`` over ``other``, seeds compared, median loss ratio)."""
    a = sub[sub.config == name].set_index(["seed", "ratio"]).loss
    b = sub[sub.config == other].set_index(["seed", "ratio"]).loss
    out = {}
    for ratio in sorted(sub.ratio.unique()):
        pairs = [(a[k], b[k]) for k in a.index if k[1] == ratio and k in b.index]
        if pairs:
            out[ratio] = (sum(x < y for x, y in pairs), len(pairs),
                          float(np.median([x / y for x, y in pairs])))
    return out


#: (challenger, reference) pairs compared seed by seed (issue #13: EC-OBS against the default)
DEFAULT_PAIRS = {"pruned": [("ec_obs", "ec_iter5")],
                 "finetuned": [("ec_obs_gradual5", "ec_gradual5"), ("ec_obs", "ec_iter5")]}


def _against_default(pruned, fine, table, ratios, head, rule):
    """Paired wins of the EC-OBS configurations over the default's (same seeds), and over
    the magnitude schedule with the lowest median loss at each ratio."""
    lines = []
    for stage, sub in (("pruned", pruned), ("finetuned", fine)):
        pairs = [(a, b) for a, b in DEFAULT_PAIRS[stage] if {a, b} <= set(sub.config)]
        if stage == "finetuned" and pairs:
            best = table.loc[[m for m in MAGNITUDE if m in table.index]].idxmin()
            pairs += [(a, "best magnitude") for a, _ in pairs]
        if not pairs:
            continue
        when = "right after pruning" if stage == "pruned" else "after fine-tuning"
        lines += ["", f"**EC-OBS, {when}**: seeds where the first configuration's test loss is below "
                  "the second's / seeds (median loss ratio).\n",
                  head.replace("config", "configurations"), rule]
        for a, b in pairs:
            if b == "best magnitude":
                cells = {r: _paired(sub[sub.ratio == r].replace({"config": {best[r]: b}}),
                                    a, b)[r] for r in ratios}
            else:
                cells = _paired(sub, a, b)
            lines.append(f"| {a} / {b} | " + " | ".join(
                f"{w}/{n} ({q:.2f})" for w, n, q in (cells[r] for r in ratios)) + " |")
    return lines


def summary_tables(frame):
    """Markdown: the issue's targets per task and configuration."""
    out = []
    for task_name, rows in frame.groupby("task", sort=False):
        out.append(f"### {task_name} ({rows.architecture.iloc[0]}, "
                   f"{rows.seed.nunique()} seeds)\n")
        dense = rows[rows.stage == "dense"].loss.median()
        out.append(f"Dense network (15 epochs): median test loss {fmt(dense)}.\n")
        ratios = sorted(r for r in rows.ratio.unique() if r > 0)
        head = "| config | " + " | ".join(f"{r:g}" for r in ratios) + " |"
        rule = "|---|" + "---|" * len(ratios)
        pruned = rows[rows.stage == "pruned"]
        out += ["**Right after pruning**: seeds where the configuration's test loss is below "
                "one-shot magnitude's / seeds (median loss ratio to magnitude). Target: >= 4/5 "
                "at every ratio.\n", head, rule]
        for name in [c for c in CONFIGS if c in set(pruned.config) and c != "magnitude"]:
            cells = _paired(pruned, name, "magnitude")
            met = all(w >= 0.8 * n for w, n, _ in cells.values())
            out.append(f"| {name}{' ✓' if met else ''} | " + " | ".join(
                f"{w}/{n} ({q:.2f})" for w, n, q in (cells[r] for r in ratios)) + " |")
        fine = rows[rows.stage == "finetuned"]
        table = fine.pivot_table(index="config", columns="ratio", values="loss",
                                 aggfunc="median")
        best_mag = table.loc[[m for m in MAGNITUDE if m in table.index]].min()
        out += ["", "**After fine-tuning**: median test loss, and its ratio to the better of "
                "one-shot and gradual magnitude (per ratio). Target: <= 1.02 at every ratio and "
                "< 1 with 0.9 and 0.95 against all magnitude schedules (✓).\n", head, rule]
        for name in [c for c in CONFIGS if c in table.index]:
            values = table.loc[name]
            q = values / best_mag
            met = bool((q <= 1.02).all() and (q[[r for r in ratios if r >= 0.9]] < 1).all())
            out.append(f"| {name}{' ✓' if met and name not in MAGNITUDE else ''} | " + " | ".join(
                f"{fmt(values[r])} ({q[r]:.2f})" for r in ratios) + " |")
        out += _against_default(pruned, fine, table, ratios, head, rule)
        cost = rows[rows.stage != "dense"].groupby("config").prune_epochs.median()
        out += ["", "Pruning cost (median over fits, all ratios) in epochs of the dense "
                "training of the same fit: " + ", ".join(
                    f"{c} {cost[c]:.2f}" for c in CONFIGS if c in cost.index) + "\n"]
    return "\n".join(out)


def measure_cost(tasks, schedules, log, repeats=3):
    """Markdown table: pruning time of each schedule in epochs of the same fit's dense stage.

    Sequential (one fit at a time, 1 torch thread, as in the runs), ratio 0.9,
    ``finetune_epochs=0``, median over ``repeats`` seeds; the dense epoch is the mean
    duration of the fit's own 15 dense epochs (skorch's history).
    """
    lines = ["| task | " + " | ".join(schedules) + " |", "|---|" + "---:|" * len(schedules)]
    for task in tasks:
        data = load_task_data(task)
        cells = []
        for name in schedules:
            costs = []
            for seed in range(repeats):
                row = run_job(task, data, (name, 0.9, seed, "pruned"), memory=None)
                costs.append(row["prune_epochs"])
            cells.append(f"{np.median(costs):.2f}")
        lines.append(f"| {task['name']} ({row['architecture']}) | " + " | ".join(cells) + " |")
        log(lines[-1])
    return "\n".join(lines) + "\n"


def main(argv=None):
    cli = parser(__doc__.splitlines()[0], {"quick": "a few minutes", "tiny": "seconds"})
    cli.set_defaults(n_jobs=2)
    cli.add_argument("--configs", nargs="+", choices=list(CONFIGS),
                     help="only these configurations (magnitude is always included)")
    cli.add_argument("--out-dir", type=Path, default=OUT_DIR)
    cli.add_argument("--cost", nargs="+", metavar="CONFIG",
                     help="only measure these configurations' pruning cost, sequentially "
                          "(writes OUT_DIR/cost.md)")
    cli.add_argument("--append", action="store_true",
                     help="add the rows of configurations not yet in OUT_DIR/results.csv")
    args = cli.parse_args(argv)
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    log = Log()
    tasks = select_tasks(configuration(args.mode), args.tasks, cli)
    if args.cost:
        table = measure_cost(tasks, args.cost, log, repeats=1 if args.mode == "tiny" else 3)
        (out_dir / "cost.md").write_text(table)
        return 0
    if not args.plot_only:
        names = None if not args.configs else ["magnitude", *args.configs]
        done = set()
        if args.append:
            import pandas as pd

            done = set(pd.read_csv(out_dir / "results.csv").config)
            names = [n for n in (names or CONFIGS) if n not in done]
        log(f"mode={args.mode} tasks={[t['name'] for t in tasks]} n_jobs={args.n_jobs} "
            + environment_line())
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as memory_dir:
            for index, task in enumerate(tasks):
                rows = run_dense_first(task, run_job, jobs_for(task, names),
                                       args.n_jobs, memory_dir, log)
                rows = [row for row in rows if row["config"] not in done]
                write_rows(out_dir / "results.csv", rows, CSV_COLUMNS,
                           append=args.append or index > 0)
        log(f"total wall time {time.perf_counter() - start:.0f} s")
    make_outputs(out_dir, log, plot_task, summary_tables)
    if not args.plot_only:
        log.write(out_dir / "run.log", append=args.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
