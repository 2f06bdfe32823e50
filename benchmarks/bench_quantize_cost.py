"""Cost of quantising every layer (issue #20), in training epochs of the same network.

Run from the repository root::

    flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_quantize_cost.py  # README section
    python benchmarks/bench_quantize_cost.py --quick                          # small, prints only

One call of ``quantize_model`` (4 bits, every ``nn.Linear``) per quantiser on the networks
of ``bench_ec_obs.py``, N = 20,000 rows of synthetic inputs, PReLU, at initialisation (the
cost depends on the shapes), with the 8,192 scoring rows the estimators use by default; on
the dense network and on the same network after 80% ``ec_obs`` pruning (pruned zeros
leave each row's problem: per-row column orders where they fit). An epoch is the plain
PyTorch loop of ``bench_scoring.py`` (Adam, batch 128, cross-entropy) over the same N rows.
The target: at most one epoch on 784-256-256-10. One untimed call first (a process's first
pass pays one-off warm-ups).
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
from pathlib import Path

import torch
from bench_scoring import epoch_time, mlp, synthetic_data

from _common import write_section  # noqa: E402  (benchmarks/ is the script's path)
from sk_ecprune import prune_model
from sk_ecprune.engine import quantize_model

README = Path(__file__).with_name("README.md")
NETWORKS = ([64, 32, 32, 10], [784, 256, 256, 10])
METHODS = ("rtn", "ec", "gptq", "ec_obs")
ROWS = 8192


def quantize_seconds(module, X, method, bits=4):
    model = copy.deepcopy(module)
    start = time.perf_counter()
    quantize_model(model, X, bits, method=method, max_samples=ROWS, random_state=0,
                   batch_size=2048)
    return time.perf_counter() - start


def measure(sizes, n):
    torch.manual_seed(0)
    dense = mlp(sizes)
    X, y = synthetic_data(n, sizes[0])
    epoch = epoch_time(dense, X, y)
    pruned = copy.deepcopy(dense)
    prune_model(pruned, X, ratio=0.8, method="ec_obs", max_samples=ROWS, random_state=0)
    quantize_seconds(dense, X, "ec")  # untimed: the first pass of a process pays warm-ups
    rows = []
    for network, module in (("dense", dense), ("80% pruned", pruned)):
        for method in METHODS:
            seconds = quantize_seconds(module, X, method)
            rows.append(("-".join(map(str, sizes)), network, method, seconds, seconds / epoch))
            print(f"{rows[-1][0]:>16s} {network:10s} {method:7s}: {seconds:7.2f} s = "
                  f"{seconds / epoch:5.2f} epochs", flush=True)
    return epoch, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; print only")
    args = parser.parse_args()
    n = 2000 if args.quick else 20000
    results = [measure(sizes, n) for sizes in (NETWORKS[:1] if args.quick else NETWORKS)]
    if args.quick:
        return
    lines = [
        "## Quantisation cost (`bench_quantize_cost.py`)",
        "",
        "Command: `flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_quantize_cost.py` "
        f"({platform.machine()}, {torch.get_num_threads()} torch threads, torch "
        f"{torch.__version__}, {time.strftime('%Y-%m-%d')}). One `quantize_model` call, 4 bits, "
        f"every layer, {ROWS} scoring rows of N = {n}; epoch = plain PyTorch loop (Adam, "
        "batch 128) over the N rows.",
        "",
        "| network | weights | method | time (s) | in training epochs |",
        "|---|---|---|---:|---:|",
    ]
    for epoch, rows in results:
        for name, network, method, seconds, epochs in rows:
            lines.append(f"| {name} | {network} | {method} | {seconds:.2f} | {epochs:.2f} |")
        lines.append(f"| {rows[0][0]} | | *one epoch* | {epoch:.3f} | 1.00 |")
    write_section("bench_quantize_cost", lines, README)
    print(f"wrote {README}")


if __name__ == "__main__":
    main()
