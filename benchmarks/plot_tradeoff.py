"""The trade-off figure (issue #14): test loss after fine-tuning against model size and time.

Reads ``results/structured/results.csv`` (``bench_structured.py``): for every task,
configuration and ratio, the median test loss after fine-tuning over the seeds, and the
network each configuration leaves -- the compacted widths of the structured methods and the
narrow dense network, the full widths for weight pruning (its zeros stay inside dense
matrices, which is what ``predict`` runs). Each distinct shape is then timed in this process
(PReLU MLP, 10,000 rows, one torch thread, median of 15 calls; speed depends on the shapes
only, so a fresh network of that shape stands in for the fitted one) and its state dict
saved, so that every point of a panel was timed in one run. The figure's axis is the size
(exact); the predict times are in the table (on networks this small, 1-3 ms per 10,000 rows,
they are within the timing noise of each other). Run from the repository root::

    flock /tmp/sk_ecprune_bench.lock python benchmarks/plot_tradeoff.py
    python benchmarks/plot_tradeoff.py --out-dir DIR --repeats 1   # another run's CSV

Writes ``results/structured/tradeoff.png`` and ``tradeoff.md``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from _common import RESULTS_DIR


OUT_DIR = RESULTS_DIR / "structured"
ROWS = 10_000


def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(torch.nn.PReLU())
    return torch.nn.Sequential(*layers).eval()


def time_and_size(sizes, repeats=15):
    module = mlp(sizes)
    X = torch.randn(ROWS, sizes[0])
    times = []
    with torch.no_grad():
        module(X)
        for _ in range(repeats):
            start = time.perf_counter()
            module(X)
            times.append(time.perf_counter() - start)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return statistics.median(times) * 1e3, buffer.tell()


def points(frame):
    """One row per (task, config, ratio): median loss and the network's widths."""
    fine = frame[frame.stage == "finetuned"]
    rows = []
    for (task, config, ratio), group in fine.groupby(["task", "config", "ratio"]):
        arch = [int(w) for w in group.architecture.iloc[0].split("-")]
        hidden = str(group.hidden_layer_sizes.mode().iloc[0])
        widths = [int(w) for w in hidden.split("-")] if hidden and hidden != "nan" else arch[1:-1]
        rows.append(dict(task=task, config=config, ratio=ratio, loss=group.loss.median(),
                         sizes=tuple([arch[0], *widths, arch[-1]])))
    return pd.DataFrame(rows)


def main(argv=None):
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--out-dir", type=Path, default=OUT_DIR,
                     help="the directory of bench_structured.py's results.csv")
    cli.add_argument("--repeats", type=int, default=15)
    args = cli.parse_args(argv)
    torch.set_num_threads(1)
    table = points(pd.read_csv(args.out_dir / "results.csv"))
    measured = {sizes: time_and_size(list(sizes), args.repeats)
                for sizes in sorted(set(table.sizes))}
    table["predict_ms"] = [measured[s][0] for s in table.sizes]
    table["state_dict_kib"] = [measured[s][1] / 1024 for s in table.sizes]
    write_figure(table, args.out_dir)
    write_table(table, args.out_dir)
    return 0


def write_figure(table, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(table.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = table[table.task == task]
        for config, rows in sub.groupby("config"):
            rows = rows.sort_values("ratio")
            ax.plot(rows.state_dict_kib, rows.loss, "o-", ms=4, label=config)
        ax.set(xscale="log", yscale="log", xlabel="saved state dict (KiB)",
               ylabel="test loss after fine-tuning (median)", title=task)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Loss against model size: each point is one ratio (0.5-0.9); weight pruning "
                 "keeps the dense size (and time: tradeoff.md)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "tradeoff.png", dpi=72)
    print(f"wrote {out_dir / 'tradeoff.png'}")


def write_table(table, out_dir):
    lines = ["| task | config | ratio | widths | test loss | predict 10k rows (ms) | "
             "state dict (KiB) |", "|---|---|---:|---|---:|---:|---:|"]
    for row in table.sort_values(["task", "config", "ratio"]).itertuples():
        lines.append(f"| {row.task} | {row.config} | {row.ratio:g} | "
                     f"{'-'.join(map(str, row.sizes))} | {row.loss:.4g} | "
                     f"{row.predict_ms:.2f} | {row.state_dict_kib:.0f} |")
    (out_dir / "tradeoff.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out_dir / 'tradeoff.md'}")


if __name__ == "__main__":
    sys.exit(main())
