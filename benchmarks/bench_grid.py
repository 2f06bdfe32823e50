"""GridSearchCV over sparsity with and without the dense-stage cache (``memory``).

The search crosses 8 pruning ratios with 2 scoring methods (``ec``, ``magnitude``) on 3
folds: 48 fits plus the refit. Without ``memory`` every fit trains its dense network again;
with ``memory`` each fold trains it once and the other 15 grid points load it. Both searches
run in one process on the same data, alternating, ``--repeats`` times each (the fastest run
of each is kept); the script checks that they return identical scores and reports the time
of each, the speed-up and the cache's disk use.

Task: the PDEBench diffusion-sorption surrogate (``sk_ecprune.datasets``), a tabular
regression: 40 simulations with smooth initial conditions, 10 times x 16 positions each
(6400 rows, 20 inputs), split by simulation (``GroupKFold``), in a ``Pipeline`` with a
``StandardScaler``; ``PrunedMLPRegressor`` with its default network (64, 64), PReLU,
Adam, batch 32.

Each ``--epochs`` pair ``DENSE/FINETUNE`` is one configuration (both searches). Run from the
repository root::

    python benchmarks/bench_grid.py                 # 30/10 and 15/15; writes benchmarks/README.md
    python benchmarks/bench_grid.py --quick         # small and fast; prints only

The expected speed-up with k grid points per fold is (D + P) / (D / k + P), D the dense
stage's time and P that of pruning plus fine-tuning (and scoring): at most k = 16 when
fine-tuning is free, 16 * 2 / 17 = 1.88 when fine-tuning costs as much as training.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_ecprune import PrunedMLPRegressor
from sk_ecprune.datasets import make_diffusion_sorption

from _common import write_section  # noqa: E402  (benchmarks/ is the script's path)

README = Path(__file__).with_name("README.md")
RATIOS = [0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95]
METHODS = ["ec", "magnitude"]


def make_data(n_simulations):
    X, y, groups = make_diffusion_sorption(
        n_samples=n_simulations, n_times=10, n_points=16, initial_condition="smooth",
        return_groups=True, random_state=0,
    )
    return X, y, groups


def disk_use(path):
    """Bytes and number of dense-network entries under a joblib.Memory location."""
    files = [p for p in Path(path).rglob("*") if p.is_file()]
    n_entries = sum(p.name == "output.pkl" for p in files)
    return sum(p.stat().st_size for p in files), n_entries


def _mean_epoch(history):
    return float(np.mean([epoch["dur"] for epoch in history])) if len(history) else float("nan")


def run_config(X, y, groups, max_epochs, finetune_epochs, n_jobs, ratios, repeats):
    """Time both searches ``repeats`` times, alternating; keep each one's fastest run.

    Every search "with memory" starts from an empty cache of its own.
    """
    pipe = make_pipeline(
        StandardScaler(),
        PrunedMLPRegressor(max_epochs=max_epochs, finetune_epochs=finetune_epochs,
                           random_state=0, activation="prelu", batch_size=32,
                           n_iter_no_change=None, weight_decay=0.0),
    )
    grid = {"prunedmlpregressor__prune_ratio": ratios,
            "prunedmlpregressor__method": METHODS}
    cv = GroupKFold(n_splits=3)
    results = {}
    for repeat in range(repeats):
        for label in ("without memory", "with memory"):
            cache_dir = tempfile.mkdtemp(prefix="bench_grid_cache_")
            try:
                search = GridSearchCV(
                    clone(pipe).set_params(
                        prunedmlpregressor__memory=cache_dir if label == "with memory" else None
                    ),
                    grid, cv=cv, n_jobs=n_jobs,
                )
                load = os.getloadavg()[0]
                start, start_cpu = time.perf_counter(), time.process_time()
                search.fit(X, y, groups=groups)
                wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
                size, n_entries = disk_use(cache_dir)
            finally:
                shutil.rmtree(cache_dir, ignore_errors=True)
            print(f"  {max_epochs}/{finetune_epochs} epochs, {label}, run {repeat + 1}: "
                  f"{wall:.1f} s (CPU {cpu:.1f} s; load average before {load:.2f})", flush=True)
            if label not in results or wall < results[label][0]:
                results[label] = (wall, cpu, search)
            if label == "with memory":
                disk = (size, n_entries)
    size, n_entries = disk
    (t_plain, cpu_plain, plain) = results["without memory"]
    (t_cached, cpu_cached, cached) = results["with memory"]
    identical = all(
        np.array_equal(plain.cv_results_[k], cached.cv_results_[k])
        for k in plain.cv_results_ if k.startswith("split") or k == "mean_test_score"
    )
    return {
        "epochs": f"{max_epochs}/{finetune_epochs}",
        "n_fits": len(plain.cv_results_["params"]) * cv.get_n_splits(),
        "t_plain": t_plain,
        "t_cached": t_cached,
        "speedup": t_plain / t_cached,
        "cpu_speedup": cpu_plain / cpu_cached,
        "identical": identical,
        "disk_bytes": size,
        "n_entries": n_entries,
        "best": plain.best_params_,
        # epoch times of the refitted model (full training set), dense and fine-tuning
        "epoch_dense": _mean_epoch(plain.best_estimator_[-1].history_dense_),
        "epoch_finetune": _mean_epoch(plain.best_estimator_[-1].history_finetune_),
        "best_r2": plain.best_score_,
    }


def write_readme(lines):
    write_section("bench_grid", lines, README)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", nargs="+", default=["30/10", "15/15"],
                        help="DENSE/FINETUNE epoch pairs, one configuration each")
    parser.add_argument("--n-jobs", type=int, default=1, help="GridSearchCV n_jobs")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each search, alternating; the fastest is kept")
    parser.add_argument("--quick", action="store_true",
                        help="10 simulations, 4 ratios, 4/4 epochs; print only")
    args = parser.parse_args()
    n_sim = 10 if args.quick else 40
    ratios = RATIOS[::2] if args.quick else RATIOS
    configs = [(4, 4)] if args.quick else [tuple(map(int, e.split("/"))) for e in args.epochs]
    if args.quick:
        args.repeats = 1

    X, y, groups = make_data(n_sim)
    print(f"data: {X.shape[0]} rows x {X.shape[1]} inputs, {n_sim} simulations; "
          f"{len(ratios)} ratios x {len(METHODS)} methods x 3 folds", flush=True)
    rows = [run_config(X, y, groups, d, f, args.n_jobs, ratios, args.repeats)
            for d, f in configs]

    header = ["| epochs (dense/fine-tune) | fits | without memory (s) | with memory (s) "
              "| speed-up | speed-up in CPU time | identical scores | cache on disk |",
              "|---|---:|---:|---:|---:|---:|---|---:|"]
    table = [
        f"| {r['epochs']} | {r['n_fits']} + refit | {r['t_plain']:.1f} | {r['t_cached']:.1f} "
        f"| **{r['speedup']:.2f}x** | {r['cpu_speedup']:.2f}x "
        f"| {'yes' if r['identical'] else 'NO'} "
        f"| {r['disk_bytes'] / 1024:.0f} KiB in {r['n_entries']} entries "
        f"({r['disk_bytes'] / 1024 / max(r['n_entries'], 1):.0f} KiB each) |"
        for r in rows
    ]
    print("\n".join(header + table))
    for r in rows:
        print(f"  {r['epochs']}: best {r['best']}, CV R^2 {r['best_r2']:.3f}; epoch "
              f"{r['epoch_dense']:.3f} s dense, {r['epoch_finetune']:.3f} s fine-tuning")
    if args.quick:
        return
    options = "" if args.epochs == parser.get_default("epochs") else " --epochs " + " ".join(
        args.epochs
    )
    options += "" if args.n_jobs == 1 else f" --n-jobs {args.n_jobs}"
    options += "" if args.repeats == 2 else f" --repeats {args.repeats}"
    lines = [
        "## Grid search with the dense-stage cache (`bench_grid.py`)",
        "",
        f"Command: `flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_grid.py{options}` "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, n_jobs={args.n_jobs}, "
        f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}).",
        "",
        f"`GridSearchCV` over {len(ratios)} pruning ratios x {len(METHODS)} methods "
        f"(`ec`, `magnitude`) x 3 folds (`GroupKFold` by simulation), refit included, on the",
        f"diffusion-sorption surrogate ({X.shape[0]} rows, {X.shape[1]} inputs, "
        f"{n_sim} simulations); `StandardScaler` + `PrunedMLPRegressor` (64, 64), batch 32.",
        f"Both searches run in the same process, alternating, {args.repeats} times each; the",
        "table keeps each one's fastest wall-clock time (and that run's CPU time, all threads",
        "of the process: a check against other load on the machine). Every search \"with",
        "memory\" starts from an empty cache.",
        "",
        *header,
        *table,
        "",
        "Expected speed-up with k = 16 grid points per fold: (D + P) / (D / k + P), D the dense",
        "training and P pruning + fine-tuning + scoring: the cache pays most when the dense",
        "training is the long stage. Mean epoch time of the refitted model (full training set):",
        "",
        *[f"- {r['epochs']}: {r['epoch_dense']:.3f} s dense, {r['epoch_finetune']:.3f} s "
          f"fine-tuning (masked weights)." for r in rows],
    ]
    write_readme(lines)
    print(f"wrote {README}")


if __name__ == "__main__":
    main()
