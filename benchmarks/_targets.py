"""Issue #22's target after fine-tuning, point by point: the default against the best baseline.

At each (task, granularity, ratio) the default schedule (EC-OBS, five gradual steps) is
compared seed by seed with the baseline whose median test loss is the lowest there. The
point is *met* when the default wins (test loss below the baseline's in at least 4/5 of the
seeds) or ties (median paired loss ratio at most 1.02); where any method's median test loss
is more than 10% above the dense network's, only a win counts (pruning and retraining that
ends *below* the dense loss, as on small data, is not a point where pruning costs accuracy). Used by
``bench_structured.py --converged``.
"""

from __future__ import annotations

import math

import numpy as np
from _common import fmt

#: granularity -> (the default configuration, its baselines)
TARGETS = {
    "weight": ("weight_ec_obs_gradual5",
               ("weight_magnitude", "weight_magnitude_gradual5", "narrow_dense")),
    "unit": ("neuron_ec_obs_gradual5",
             ("tp_magnitude", "neuron_magnitude", "neuron_magnitude_gradual5", "narrow_dense")),
}
TIE, WIN, FAR = 1.02, 0.8, 0.10
#: names in the tables' "> 10% above dense" column
SHORT = {"weight_ec_obs_gradual5": "default", "neuron_ec_obs_gradual5": "default",
         "weight_magnitude": "mag", "weight_magnitude_gradual5": "mag_g5",
         "neuron_magnitude": "mag", "neuron_magnitude_gradual5": "mag_g5",
         "tp_magnitude": "tp", "narrow_dense": "narrow"}
COLORS = {"default": "C0", "mag": "C1", "mag_g5": "C2", "tp": "C4", "narrow": "C3"}


def target_points(rows):
    """One dict per (granularity, ratio) of a task's rows (its CSV rows): the default's and
    the best baseline's medians, the paired comparison and whether the target is met."""
    fine = rows[rows.stage == "finetuned"]
    dense = rows[rows.stage == "dense"].loss.median()
    points = []
    for granularity, (default, baselines) in TARGETS.items():
        present = [b for b in baselines if b in set(fine.config)]
        if default not in set(fine.config) or not present:
            continue
        for ratio in sorted(fine[fine.config == default].ratio.unique()):
            at = fine[fine.ratio == ratio]
            medians = at.groupby("config").loss.median()
            best = min(present, key=lambda b: medians.get(b, math.inf))
            ours = at[at.config == default].set_index("seed")
            theirs = at[at.config == best].set_index("seed")
            seeds = [s for s in ours.index if s in theirs.index]
            ratios = [ours.loss[s] / theirs.loss[s] for s in seeds]
            wins = sum(q < 1 for q in ratios)
            far = [c for c in [default, *present]
                   if c in medians and medians[c] > (1 + FAR) * dense]
            win = wins >= WIN * len(seeds)
            tie = float(np.median(ratios)) <= TIE
            points.append(dict(
                granularity=granularity, ratio=ratio, best=best, n=len(seeds), wins=wins,
                median_ratio=float(np.median(ratios)), far=far,
                met=win if far else (win or tie),
                ours=(ours.loss.median(), ours.train_loss.median()),
                theirs=(theirs.loss.median(), theirs.train_loss.median())))
    return points


def target_overview(frame):
    """Markdown: one row per task and granularity, one cell per ratio: met or missed, the
    default's wins over the best baseline and the median paired loss ratio."""
    points = {task: target_points(rows) for task, rows in frame.groupby("task", sort=False)}
    ratios = sorted({p["ratio"] for task in points.values() for p in task})
    out = ["| task | granularity | " + " | ".join(f"{r:g}" for r in ratios) + " |",
           "|---|---|" + "---|" * len(ratios)]
    for task, task_points in points.items():
        for granularity in TARGETS:
            cells = {p["ratio"]: p for p in task_points if p["granularity"] == granularity}
            if cells:
                out.append(f"| {task} | {granularity} | " + " | ".join(
                    (f"{'**met**' if cells[r]['met'] else 'missed'} {cells[r]['wins']}/"
                     f"{cells[r]['n']} ({cells[r]['median_ratio']:.2f})") if r in cells
                    else "–" for r in ratios) + " |")
    return "\n".join(out) + "\n"


def target_tables(frame):
    """Markdown: the overview (:func:`target_overview`), then per task every point of the
    target with training loss next to test loss, and the medians of every configuration."""
    out = ["Every point: met or missed, seeds where the default's test loss is below the best "
           "baseline's / seeds (median paired loss ratio).\n", target_overview(frame),
           "The same against the pruning baselines only (the narrow network left out):\n",
           target_overview(frame[frame.config != "narrow_dense"])]
    for task_name, rows in frame.groupby("task", sort=False):
        dense = rows[rows.stage == "dense"]
        out += [f"### {task_name} ({rows.architecture.iloc[0]}, {rows.seed.nunique()} seeds)\n",
                f"Dense network: median test loss {fmt(dense.loss.median())}, training loss "
                f"{fmt(dense.train_loss.median())}.\n",
                "| granularity | r | default: test / train | best baseline: test / train | "
                "default below it / seeds (median ratio) | > 10% above dense | met |",
                "|---|---|---|---|---|---|---|"]
        for p in target_points(rows):
            far = ", ".join(SHORT.get(c, c) for c in p["far"]) or "no"
            out.append(
                f"| {p['granularity']} | {p['ratio']:g} | {fmt(p['ours'][0])} / "
                f"{fmt(p['ours'][1])} | {p['best']}: {fmt(p['theirs'][0])} / "
                f"{fmt(p['theirs'][1])} | {p['wins']}/{p['n']} ({p['median_ratio']:.2f}) | "
                f"{far} | {'**met**' if p['met'] else 'missed'} |")
        fine = rows[rows.stage == "finetuned"]
        ratios = sorted(fine.ratio.unique())
        out += ["", "Median test loss / training loss after fine-tuning, every configuration:\n",
                "| config | " + " | ".join(f"{r:g}" for r in ratios) + " |",
                "|---|" + "---|" * len(ratios)]
        for name, sub in fine.groupby("config", sort=False):
            cells = [sub[sub.ratio == r] for r in ratios]
            out.append(f"| {name} | " + " | ".join(
                f"{fmt(c.loss.median())} / {fmt(c.train_loss.median())}" if len(c) else "–"
                for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def plot_targets(frame, task_name, path):
    """Test (top) and training loss (bottom) after fine-tuning against the ratio, weight
    (left) and unit granularity (right): median and min-max over seeds, dense as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = frame[frame.task == task_name]
    fine, dense = rows[rows.stage == "finetuned"], rows[rows.stage == "dense"]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for column, (granularity, (default, baselines)) in enumerate(TARGETS.items()):
        for name in (default, *baselines):
            sub = fine[fine.config == name]
            if not len(sub):
                continue
            for row, loss in enumerate(("loss", "train_loss")):
                stats = sub.groupby("ratio")[loss].agg(["median", "min", "max"])
                ax = axes[row, column]
                color = COLORS[SHORT[name]]
                ax.plot(stats.index, stats["median"], "-" if name == default else "--",
                        marker="o", lw=2.5 if name == default else 1.2, label=name, color=color)
                ax.fill_between(stats.index, stats["min"], stats["max"], alpha=0.15,
                                color=color)
        for row, loss in enumerate(("loss", "train_loss")):
            ax = axes[row, column]
            ax.axhline(dense[loss].median(), color="k", lw=0.8, ls=":", label="dense")
            ax.set(yscale="log", title=f"{granularity}: {'test' if row == 0 else 'training'} "
                   "loss after fine-tuning", xlabel="pruning ratio" if row else None)
        axes[0, column].legend(fontsize=7)
    figure.suptitle(f"{task_name} ({rows.architecture.iloc[0]}): default (EC-OBS, gradual 5) "
                    f"against the baselines, median and min-max over {rows.seed.nunique()} "
                    "seeds", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=72)
    plt.close(figure)
