"""Cost of each scoring method, in units of one training epoch of the same network.

Run from the repository root::

    python benchmarks/bench_scoring.py            # writes the table into benchmarks/README.md
    python benchmarks/bench_scoring.py --quick    # smaller sizes, prints only

An epoch is a plain PyTorch loop (Adam, batch 128, cross-entropy) over tensors already in
memory: the cheapest honest epoch, so the ratios are conservative. ``nonlinear`` costs one
forward pass of the network's tail per weight; on the wide network it is timed on a subset of
the weights and extrapolated (marked "extrap.").
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from sk_ecprune import score_weights
from sk_ecprune.engine.recording import ScoringData, linear_layers, module_device_dtype
from sk_ecprune.engine.scoring.nonlinear import input_means, nonlinear_output_change

from _common import write_section  # noqa: E402  (benchmarks/ is the script's path)

README = Path(__file__).with_name("README.md")
METHODS = ["ec", "obd", "magnitude", "gradient_magnitude", "random", "nonlinear"]


def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.PReLU())
    return nn.Sequential(*layers)


def digits_data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return torch.tensor(X / 16, dtype=torch.float32), torch.tensor(y)


def synthetic_data(n, d, n_classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = torch.randint(0, n_classes, (n,), generator=g)
    return X, y


def epoch_time(module, X, y, batch_size=128, repeats=3):
    optimizer = torch.optim.Adam(module.parameters(), 1e-3)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        order = torch.randperm(len(X))
        for i in range(0, len(X), batch_size):
            batch = order[i : i + batch_size]
            optimizer.zero_grad()
            nn.functional.cross_entropy(module(X[batch]), y[batch]).backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def nonlinear_time_extrapolated(module, X, max_weights=256):
    """Time ``nonlinear`` on the first ``max_weights`` weights of each layer, scale up."""
    layers = [layer for _, layer in linear_layers(module)]
    device, dtype = module_device_dtype(module)
    data = ScoringData.from_arrays(X, None, 1024, device, dtype)
    total = 0.0
    with torch.no_grad():
        means = input_means(module, layers, data)
    for index, layer in enumerate(layers):
        n = layer.weight.numel()
        if n <= max_weights:
            start = time.perf_counter()
            nonlinear_output_change(module, layers, data, index, means[index])
            total += time.perf_counter() - start
            continue
        saved = layer.weight.detach().clone()
        with torch.no_grad():  # score only a subset: zero weights are skipped
            flat = layer.weight.view(-1)
            flat[max_weights:] = 0
        start = time.perf_counter()
        nonlinear_output_change(module, layers, data, index, means[index])
        total += (time.perf_counter() - start) * n / max_weights
        with torch.no_grad():
            layer.weight.copy_(saved)
    return total


def time_methods(name, sizes, X, y, nonlinear_subset):
    torch.manual_seed(0)
    module = mlp(sizes)
    epoch = epoch_time(module, X, y)
    rows = []
    for method in METHODS:
        extrapolated = method == "nonlinear" and nonlinear_subset
        start = time.perf_counter()
        if extrapolated:
            seconds = nonlinear_time_extrapolated(module, X)
        else:
            score_weights(module, X, y, method=method, loss=nn.CrossEntropyLoss(), random_state=0)
            seconds = time.perf_counter() - start
        rows.append((name, method, seconds, seconds / epoch, extrapolated))
        print(f"{name:34s} {method:20s} {seconds:9.3f} s  {seconds / epoch:8.2f} epochs"
              + ("  (extrap.)" if extrapolated else ""), flush=True)
    return epoch, rows


MEMORY_SCRIPT = """
import json, sys, torch
from bench_scoring import mlp
from sk_ecprune import prune_model, score_weights
n = int(sys.argv[1])
torch.manual_seed(0)
module = mlp([784, 256, 256, 10])
X = torch.randn(n, 784)
def status_mib(field):
    with open('/proc/self/status') as f:
        return int(next(l for l in f if l.startswith(field)).split()[1]) / 1024
before = status_mib('VmRSS')
{call}
peak = status_mib('VmHWM')  # not ru_maxrss: it counts the forked parent before exec
print(json.dumps({{'n': n, 'data_mib': X.numel() * 4 / 2**20, 'extra_peak_mib': peak - before}}))
"""


def peak_memory(n, call):
    """Peak resident memory that the statement ``call`` adds above the model (784-256-256-10)
    and the data (``X``, ``n`` rows), in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT.format(call=call), str(n)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def ec_peak_memory(n):
    """Peak resident memory added by EC scoring, above the model and data, in a fresh process."""
    return peak_memory(n, "score_weights(module, X, method='ec', batch_size=1024)")


def write_readme(lines):
    write_section("bench_scoring", lines, README)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; print only")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    n_wide = 2000 if args.quick else 20000
    X_digits, y_digits = digits_data()
    X_wide, y_wide = synthetic_data(n_wide, 784)
    results = [
        time_methods("digits 64-32-32-10 (N=1797)", [64, 32, 32, 10], X_digits, y_digits, False),
        time_methods(f"synthetic 784-256-256-10 (N={n_wide})", [784, 256, 256, 10], X_wide, y_wide, True),
    ]
    memory = [ec_peak_memory(n) for n in ((2000, 20000) if args.quick else (10000, 200000))]
    for m in memory:
        print(f"ec scoring, N={m['n']}: data {m['data_mib']:.0f} MiB, extra peak {m['extra_peak_mib']:.0f} MiB")
    if args.quick:
        return
    lines = [
        "## Scoring cost (`bench_scoring.py`)",
        "",
        "Command: `python benchmarks/bench_scoring.py` "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}).",
        "One epoch = plain PyTorch loop, Adam, batch 128, cross-entropy, over in-memory tensors.",
        "",
        "| network | method | scoring time (s) | in training epochs |",
        "|---|---|---:|---:|",
    ]
    for epoch, rows in results:
        for name, method, seconds, ratio, extrapolated in rows:
            mark = " (extrap.)" if extrapolated else ""
            lines.append(f"| {name} | {method} | {seconds:.3f}{mark} | {ratio:.2f}{mark} |")
        lines.append(f"| {rows[0][0]} | *one epoch* | {epoch:.3f} | 1.00 |")
    lines += [
        "",
        "Peak memory of `ec` scoring (784-256-256-10, batch 1024), resident memory added above",
        "the model and the data, each N in a fresh process:",
        "",
        "| N | data (MiB) | extra peak (MiB) |",
        "|---:|---:|---:|",
    ]
    lines += [f"| {m['n']} | {m['data_mib']:.0f} | {m['extra_peak_mib']:.0f} |" for m in memory]
    write_readme(lines)
    print(f"wrote {README}")


if __name__ == "__main__":
    main()
