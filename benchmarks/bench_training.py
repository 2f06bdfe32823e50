"""Training speed and memory of the estimators against scikit-learn, PyTorch and skorch.

Run from the repository root (timing runs take the shared lock, so that benchmarks of
different people never overlap)::

    flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_training.py          # README
    flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_training.py --quick  # print only

What it measures, all in one process so that ratios compare like with like:

1. Dense stage on two CPU cases -- tabular regression (20,000 x 20 float32, hidden
   (64, 64)), batch 128) and digits classification (1,797 x 64, 64-32-32-10, batch 16),
   ReLU, Adam (lr 1e-3, no weight decay), 10 epochs: the fit time of
   ``PrunedMLP*(prune_ratio=0, finetune_epochs=0)``, of scikit-learn's ``MLPRegressor`` /
   ``MLPClassifier`` with the same architecture, optimiser, batch size and epochs
   (``tol=0``, no early stopping, ``alpha=0``), of a hand-written PyTorch loop over tensors
   already in memory (shuffled index per epoch, one gather per batch; with torch's default
   Adam, and with the fused Adam the estimators use), and of a plain skorch net
   (``train_split=None``). Repeats are interleaved; each time is the median.
2. The full fit (default schedule: ``prune_ratio=0.5``, ``method="ec"``, five steps with the
   fine-tuning epochs between them) against
   the dense fit (``prune_ratio=0``), both 15 + 15 epochs, on the same two cases.
3. Peak memory of a full fit at 1,000,000 x 100 float32, in a fresh process: the peak
   resident set size during ``fit`` (Linux ``VmHWM``, reset before the fit, after a
   warm-up fit on 2,000 rows so that one-time library initialisation is not counted)
   against the size of the training data plus the model.
4. With a CUDA device only: samples per second of the estimator's dense stage against the
   hand-written loop on the device, 1,000,000 x 100, hidden (1024, 1024), batch 1024.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import torch

from _common import write_section  # noqa: E402  (benchmarks/ is the script's path)

README = Path(__file__).with_name("README.md")
MARK = "bench_training"
LR = 1e-3


# ------------------------------------------------------------------------------ the cases
def tabular_case(n=20_000, d=20):
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=n, n_features=d, n_informative=d, noise=1.0, random_state=0)
    y = (y - y.mean()) / y.std()
    return dict(
        name=f"tabular {n:,} x {d}",
        kind="regression",
        X=X.astype(np.float32),
        y=y.astype(np.float32),
        hidden=(64, 64),
        batch_size=128,
    )


def digits_case():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return dict(
        name=f"digits {X.shape[0]:,} x {X.shape[1]}",
        kind="classification",
        X=(X / 16).astype(np.float32),
        y=y.astype(np.int64),
        hidden=(32, 32),
        batch_size=16,
    )


# ----------------------------------------------------------------------------- contenders
def fit_ours(case, epochs, finetune_epochs=0, prune_ratio=0.0, device="cpu"):
    from sk_ecprune import PrunedMLPClassifier, PrunedMLPRegressor

    Est = PrunedMLPRegressor if case["kind"] == "regression" else PrunedMLPClassifier
    est = Est(
        hidden_layer_sizes=case["hidden"],
        activation="relu",
        prune_ratio=prune_ratio,
        max_epochs=epochs,
        finetune_epochs=finetune_epochs,
        lr=LR,
        batch_size=case["batch_size"],
        device=device,
        random_state=0,
        n_iter_no_change=None,  # every epoch runs: the epochs are what is timed
        weight_decay=0.0,
    )
    return est.fit(case["X"], case["y"])


def fit_sklearn(case, epochs):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    Est = MLPRegressor if case["kind"] == "regression" else MLPClassifier
    est = Est(
        hidden_layer_sizes=case["hidden"],
        activation="relu",
        solver="adam",
        alpha=0.0,
        batch_size=case["batch_size"],
        learning_rate_init=LR,
        max_iter=epochs,
        shuffle=True,
        tol=0.0,
        n_iter_no_change=epochs + 1,
        early_stopping=False,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(case["X"], case["y"])


def _module(case, n_outputs, device="cpu"):
    from sk_ecprune.engine import MLP

    return MLP(case["X"].shape[1], n_outputs, case["hidden"], "relu").to(device)


def _targets(case):
    y = case["y"]
    if case["kind"] == "regression":
        return torch.from_numpy(y.reshape(-1, 1)), torch.nn.functional.mse_loss, 1
    return torch.from_numpy(y), torch.nn.functional.cross_entropy, int(y.max()) + 1


def fit_torch(case, epochs, fused=None, device="cpu", X=None, y=None):
    """The hand-written loop: tensors already made, one gather per batch."""
    y_t, loss_fn, n_outputs = _targets(case)
    X = torch.from_numpy(case["X"]).to(device) if X is None else X
    y = y_t.to(device) if y is None else y
    torch.manual_seed(0)
    module = _module(case, n_outputs, device)
    optimizer = torch.optim.Adam(module.parameters(), lr=LR, fused=fused)
    n, batch_size = len(X), case["batch_size"]
    for _ in range(epochs):
        perm = torch.randperm(n, device=device)
        for start in range(0, n, batch_size):
            index = perm[start : start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(module(X[index]), y[index])
            loss.backward()
            optimizer.step()
    return module


def fit_skorch(case, epochs):
    from skorch import NeuralNetClassifier, NeuralNetRegressor

    from sk_ecprune.engine import MLP

    y_t, _, n_outputs = _targets(case)
    Net = NeuralNetRegressor if case["kind"] == "regression" else NeuralNetClassifier
    torch.manual_seed(0)
    net = Net(
        MLP,
        module__n_features=case["X"].shape[1],
        module__n_outputs=n_outputs,
        module__hidden_layer_sizes=case["hidden"],
        module__activation="relu",
        optimizer=torch.optim.Adam,
        lr=LR,
        max_epochs=epochs,
        batch_size=case["batch_size"],
        iterator_train__shuffle=True,
        train_split=None,
        verbose=0,
    )
    return net.fit(case["X"], y_t.numpy())


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def interleaved(contenders, repeats):
    """Median time of each contender, the repeats interleaved (one round = each once)."""
    times = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            times[name].append(timed(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}, times


# ------------------------------------------------------------------------------- sections
def dense_stage(case, epochs, repeats):
    contenders = {
        "sk_ecprune": lambda: fit_ours(case, epochs),
        "scikit-learn": lambda: fit_sklearn(case, epochs),
        "torch loop": lambda: fit_torch(case, epochs),
        "torch loop, fused Adam": lambda: fit_torch(case, epochs, fused=True),
        "plain skorch": lambda: fit_skorch(case, epochs),
    }
    fit_ours(case, 1)  # warm-up: imports, first-call allocations
    medians, all_times = interleaved(contenders, repeats)
    print(f"{case['name']}: " + json.dumps({k: [round(t, 3) for t in v] for k, v in all_times.items()}))
    return medians


def pruning_overhead(case, repeats, epochs=15, finetune_epochs=15):
    contenders = {
        "dense": lambda: fit_ours(case, epochs, finetune_epochs, prune_ratio=0.0),
        "pruned": lambda: fit_ours(case, epochs, finetune_epochs, prune_ratio=0.5),
    }
    medians, all_times = interleaved(contenders, repeats)
    print(f"{case['name']} {epochs}+{finetune_epochs}: "
          + json.dumps({k: [round(t, 3) for t in v] for k, v in all_times.items()}))
    # where the difference goes, from one more fit of each: skorch's epoch durations
    dense = fit_ours(case, epochs, finetune_epochs, prune_ratio=0.0)
    pruned = fit_ours(case, epochs, finetune_epochs, prune_ratio=0.5)
    finetune = [sum(e.history_finetune_[:, "dur"]) for e in (dense, pruned)]
    return medians, pruned.pruning_report_.time_s, finetune


_MEMORY_CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from sk_ecprune import PrunedMLPRegressor

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
n, d, dtype = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
g = torch.Generator().manual_seed(0)
X = torch.randn(n, d, generator=g).numpy()
y = (X[:, :5].sum(1) + 0.1 * torch.randn(n, generator=g).numpy()).astype(np.float32)
if dtype == "float64":
    X = X.astype(np.float64)
reg = PrunedMLPRegressor(hidden_layer_sizes=(64, 64), max_epochs=1, finetune_epochs=1,
                         batch_size=1024, prune_ratio=0.5, random_state=0)
reg.fit(X[:2000], y[:2000])  # warm-up: one-time library initialisation is not the fit's
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS")
start = time.perf_counter()
reg.fit(X, y)
elapsed = time.perf_counter() - start
model = sum(p.numel() * p.element_size() for p in reg.net_.module_.parameters())
print(json.dumps(dict(before=before, peak=status("VmHWM"), seconds=elapsed, model=model,
                      data32=n * d * 4, input_bytes=X.nbytes)))
"""


def peak_memory(n, d, dtype):
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, str(n), str(d), dtype],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def gpu_throughput(repeats, n=1_000_000, d=100, hidden=(1024, 1024), batch_size=1024, epochs=5,
                   device="cuda"):
    def sync():
        if device == "cuda":
            torch.cuda.synchronize()
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g)
    y = X[:, :5].sum(1) + 0.1 * torch.randn(n, generator=g)
    case = dict(
        name=f"GPU {n:,} x {d}",
        kind="regression",
        X=X.numpy(),
        y=y.numpy(),
        hidden=hidden,
        batch_size=batch_size,
    )
    X_dev, y_dev = X.to(device), y.reshape(-1, 1).to(device)

    epoch_times = []

    def ours():
        est = fit_ours(case, epochs, device=device)
        sync()
        epoch_times.append(statistics.median(est.history_dense_[:, "dur"]))

    def loop(fused):
        fit_torch(case, epochs, fused=fused, device=device, X=X_dev, y=y_dev)
        sync()

    fit_torch(case, 1, device=device, X=X_dev[:50_000], y=y_dev[:50_000])  # warm-up
    contenders = {
        "sk_ecprune": ours,
        "torch loop": lambda: loop(None),
        "torch loop, fused Adam": lambda: loop(True),
    }
    medians, _ = interleaved(contenders, repeats)
    rates = {name: n * epochs / t for name, t in medians.items()}
    rates["sk_ecprune epochs"] = n / statistics.median(epoch_times)
    return rates, torch.cuda.get_device_name() if device == "cuda" else device


# --------------------------------------------------------------------------------- report
def write_readme(lines):
    write_section(MARK, lines, README)


def _mark(ok):
    return "met" if ok else "**not met**"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repeat; print only")
    parser.add_argument("--only", choices=["dense", "pruning", "memory"],
                        help="run one section and print it (no README)")
    args = parser.parse_args()

    def run(section):
        return args.only in (None, section)

    repeats = 1 if args.quick else args.repeats
    epochs = 2 if args.quick else 10
    cases = [tabular_case(n=2000) if args.quick else tabular_case(), digits_case()]
    targets = []

    lines = [
        "## Training speed and memory (`bench_training.py`)",
        "",
        f"Command: `flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_training.py"
        f"{'' if args.repeats == 5 else f' --repeats {args.repeats}'}` "
        f"({platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, {date.today().isoformat()}). Median of {repeats} interleaved "
        "repeats in one process; ratios are of the medians. Other processes may load the "
        "machine: compare ratios, not seconds across runs.",
        "",
        f"**Dense stage** ({epochs} epochs, ReLU (scikit-learn has no PReLU), Adam lr {LR:g}, no "
        "weight decay; sk_ecprune is `PrunedMLP*(prune_ratio=0, finetune_epochs=0)`, timed "
        "around `fit`, validation and the two loss passes included; the torch loops shuffle "
        "an index per epoch and gather each batch; \"fused Adam\" is `Adam(fused=True)`, the "
        "kernel the estimators use):",
        "",
        "| case | sk_ecprune (s) | scikit-learn (s) | torch loop (s) | torch loop, fused Adam (s) "
        "| plain skorch (s) | vs scikit-learn | vs torch loop | vs fused loop | vs skorch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases if run("dense") else []:
        m = dense_stage(case, epochs, repeats)
        ours = m["sk_ecprune"]
        lines.append(
            f"| {case['name']}, {case['hidden']}, batch {case['batch_size']} | {ours:.3f} "
            f"| {m['scikit-learn']:.3f} | {m['torch loop']:.3f} | {m['torch loop, fused Adam']:.3f} "
            f"| {m['plain skorch']:.3f} | **{ours / m['scikit-learn']:.2f}x** "
            f"| **{ours / m['torch loop']:.2f}x** | {ours / m['torch loop, fused Adam']:.2f}x "
            f"| {ours / m['plain skorch']:.2f}x |"
        )
        print(lines[-1], flush=True)
        sk, loop = ours / m["scikit-learn"], ours / m["torch loop"]
        fused = ours / m["torch loop, fused Adam"]
        targets += [
            f"- Dense stage <= 1.0x scikit-learn, {case['name']}: {sk:.2f}x, {_mark(sk <= 1.0)} "
            f"(the bare loop with the same fused Adam: "
            f"{m['torch loop, fused Adam'] / m['scikit-learn']:.2f}x).",
            f"- Dense stage <= 1.2x the hand-written loop, {case['name']}: {loop:.2f}x "
            f"({fused:.2f}x the loop with fused Adam), {_mark(loop <= 1.2)}.",
        ]

    ft = 2 if args.quick else 15
    lines += [
        "",
        f"**Pruning step** (full fit with the default schedule, `prune_ratio=0.5`, "
        f"`method=\"ec\"`, `prune_steps=5`, `gradual=True`, against `prune_ratio=0`; {ft} + {ft} "
        "epochs, same settings otherwise; the last column sums skorch's epoch durations of the "
        "fine-tuning without and with the removed weights held at zero):",
        "",
        "| case | dense fit (s) | pruned fit (s) | added | scoring + removal (s) "
        "| fine-tuning, dense / masked (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for case in cases if run("pruning") else []:
        m, prune_s, (ft_dense, ft_masked) = pruning_overhead(case, repeats, ft, ft)
        added = m["pruned"] / m["dense"] - 1
        lines.append(
            f"| {case['name']} | {m['dense']:.3f} | {m['pruned']:.3f} "
            f"| **{added:+.1%}** | {prune_s:.3f} "
            f"| {ft_dense:.3f} / {ft_masked:.3f} |"
        )
        print(lines[-1], flush=True)
        targets.append(
            f"- Pruning adds <= 10% to a {ft} + {ft} fit, {case['name']}: {added:+.1%}, "
            f"{_mark(added <= 0.10)} (scoring and removal {prune_s / m['dense']:.1%} of the "
            f"dense fit; fine-tuning through the masks {ft_masked / ft_dense - 1:+.0%} per epoch)."
        )

    if run("memory"):
        n, d = (100_000, 100) if args.quick else (1_000_000, 100)
        lines += [
            "",
            f"**Peak memory** of a full fit at {n:,} x {d} (float32 data "
            f"{n * d * 4 / 2**20:.0f} MiB; hidden (64, 64), batch 1024, 1 + 1 epochs, "
            "`prune_ratio=0.5`), fresh process, peak RSS during `fit` (VmHWM reset before, "
            "after a warm-up fit). The fit holds the float32 training data once: the "
            "caller's array itself when it is float32 (shared, not copied; it is in \"RSS "
            "before\"), or the copy `validate_data` makes of a float64 array (in \"added\"):",
            "",
            "| input X | RSS before fit (MiB) | peak during fit (MiB) | added by fit (MiB) "
            "| float32 data + added (MiB) | / (float32 data + model) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for dtype in ("float32", "float64"):
            r = peak_memory(n, d, dtype)
            added = r["peak"] - r["before"]
            held = added + (r["data32"] if dtype == "float32" else 0)
            ratio = held / (r["data32"] + r["model"])
            lines.append(
                f"| {dtype} | {r['before'] / 2**20:.0f} | {r['peak'] / 2**20:.0f} "
                f"| {added / 2**20:.0f} | {held / 2**20:.0f} | **{ratio:.2f}x** |"
            )
            print(lines[-1], flush=True)
            targets.append(
                f"- Peak memory <= 2x (float32 data + model), {dtype} input: {ratio:.2f}x, "
                f"{_mark(ratio <= 2.0)}."
            )

    lines.append("")
    if args.only:
        pass
    elif torch.cuda.is_available():
        rates, name = gpu_throughput(repeats)
        loop, fused = rates["torch loop"], rates["torch loop, fused Adam"]
        lines += [
            f"**GPU** ({name}; 1,000,000 x 100, hidden (1024, 1024), batch 1024, 5 epochs, "
            "samples per second; sk_ecprune's whole `fit` (validation, transfers, loss passes "
            "included) and its training epochs alone (skorch's epoch durations)):",
            "",
            "| | samples/s | vs torch loop | vs fused loop |",
            "|---|---:|---:|---:|",
        ]
        for label, key in (("sk_ecprune, whole fit", "sk_ecprune"),
                           ("sk_ecprune, training epochs", "sk_ecprune epochs"),
                           ("torch loop", "torch loop"),
                           ("torch loop, fused Adam", "torch loop, fused Adam")):
            lines.append(f"| {label} | {rates[key]:,.0f} | **{rates[key] / loop:.2f}x** "
                         f"| {rates[key] / fused:.2f}x |")
        print(lines[-1], flush=True)
        whole = rates["sk_ecprune"] / loop
        targets.append(f"- GPU >= 0.9x the hand-written loop's throughput: {whole:.2f}x "
                       f"(whole fit), {_mark(whole >= 0.9)}.")
    else:
        lines.append("GPU: not measured (no CUDA device on this machine).")
        targets.append("- GPU >= 0.9x the hand-written loop's throughput: not measured here.")

    lines += ["", "Against issue #7's targets:", "", *targets]
    if args.quick or args.only:
        print("\n".join(lines))
    else:
        write_readme(lines)
        print(f"wrote {README}")


if __name__ == "__main__":
    main()
