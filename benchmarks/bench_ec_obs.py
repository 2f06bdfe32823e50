"""Cost of EC-OBS pruning (issue #13), in training epochs of the same network, and its memory.

Run from the repository root::

    flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_ec_obs.py   # writes README section
    python benchmarks/bench_ec_obs.py --quick                            # small, prints only

One call of ``prune_model`` (one step, ratio 0.8 and 0.95, global scope) on the networks of
the issue, N = 20,000 rows of synthetic inputs, PReLU, at initialisation (the cost depends on
the shapes, not on the training); with all rows, and with the 8,192 scoring rows the
estimators use by default (``scoring_samples``). An epoch is the plain PyTorch loop of
``bench_scoring.py`` (Adam, batch 128, cross-entropy) over the same N rows. ``ec`` (one
scoring pass and the bias shifts) is the reference; ``ec_obs_exact`` (a Hessian per unit,
greedy sequences) is timed once, at ratio 0.8, where it finishes in minutes. Peak memory: resident memory
added above the model and the data by one ``ec_obs`` call on 784-256-256-10, in a fresh
process.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from pathlib import Path

import torch
from bench_scoring import epoch_time, mlp, peak_memory, synthetic_data

from _common import write_section  # noqa: E402  (benchmarks/ is the script's path)
from sk_ecprune import prune_model

README = Path(__file__).with_name("README.md")
NETWORKS = ([64, 32, 32, 10], [784, 32, 32, 10], [784, 256, 256, 10])
#: (method, scoring rows); None = all rows
CASES = [("ec", None), ("ec_obs", None), ("ec_obs", 8192), ("ec_obs_exact", 8192)]
EXACT_UP_TO = 784 * 32  # weights of the first layer for which the exact form is timed


def prune_seconds(module, X, method, max_samples, ratio):
    pruned = copy.deepcopy(module)
    start = time.perf_counter()
    prune_model(pruned, X, ratio=ratio, method=method, max_samples=max_samples,
                random_state=0, batch_size=2048)
    return time.perf_counter() - start


def measure(sizes, n, ratios):
    torch.manual_seed(0)
    module = mlp(sizes)
    X, y = synthetic_data(n, sizes[0])
    epoch = epoch_time(module, X, y)
    rows = []
    for method, rows_used in CASES:
        if method == "ec_obs_exact" and sizes[0] * sizes[1] > EXACT_UP_TO:
            continue
        for ratio in ratios[:1] if method == "ec_obs_exact" else ratios:  # minutes each
            seconds = prune_seconds(module, X, method, rows_used, ratio)
            rows.append(("-".join(map(str, sizes)), method, rows_used or n, ratio, seconds,
                         seconds / epoch))
            print(f"{rows[-1][0]:>16s} {method:13s} rows={rows_used or n:6d} r={ratio}: "
                  f"{seconds:7.2f} s = {seconds / epoch:6.2f} epochs", flush=True)
    return epoch, rows


def method_peak_memory(n, method):
    call = f"prune_model(module, X, ratio=0.8, method={method!r}, batch_size=2048)"
    return dict(peak_memory(n, call), method=method)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; print only")
    args = parser.parse_args()
    n = 2000 if args.quick else 20000
    ratios = (0.8,) if args.quick else (0.8, 0.95)
    networks = NETWORKS[:2] if args.quick else NETWORKS
    results = [measure(sizes, n, ratios) for sizes in networks]
    memory = [method_peak_memory(n, method) for method in ("ec", "ec_obs")]
    for m in memory:
        print(f"{m['method']}: extra peak {m['extra_peak_mib']:.0f} MiB (N={m['n']})")
    if args.quick:
        return
    lines = [
        "## EC-OBS pruning cost (`bench_ec_obs.py`)",
        "",
        "Command: `flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_ec_obs.py` "
        f"({platform.machine()}, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d')}). One `prune_model` call, one step, "
        f"global scope, N = {n}; epoch = plain PyTorch loop (Adam, batch 128) over the N rows.",
        "",
        "| network | method | scoring rows | ratio | time (s) | in training epochs |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for epoch, rows in results:
        for name, method, rows_used, ratio, seconds, epochs in rows:
            lines.append(f"| {name} | {method} | {rows_used} | {ratio} | {seconds:.2f} | "
                         f"{epochs:.2f} |")
        lines.append(f"| {rows[0][0]} | *one epoch* | {n} | | {epoch:.3f} | 1.00 |")
    lines += ["", "Peak resident memory added by one call on 784-256-256-10 (N = "
              f"{n}, all rows, ratio 0.8), in a fresh process: "
              + ", ".join(f"`{m['method']}` {m['extra_peak_mib']:.0f} MiB" for m in memory)
              + "."]
    write_section("bench_ec_obs", lines, README)
    print(f"wrote {README}")


if __name__ == "__main__":
    main()
