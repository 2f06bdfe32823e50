"""Where users wait (issue #23): pruning against training, the first fit, dense training
against scikit-learn, and a grid search as a user runs it.

Run from the repository root (timing runs take the shared lock)::

    flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_speed.py          # README section
    flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_speed.py --quick  # print only

Rows, each a ratio measured within this one run (the machine's speed cancels out):

1. EC-OBS pruning with the estimator's defaults (``method="ec_obs"``, five gradual steps,
   ``prune_ratio=0.5``) against its own dense stage (15 epochs, batch 32): the fit's
   ``pruning_time_`` over the summed epoch times of ``history_dense_``, one torch thread,
   on digits (1,797 x 64, hidden (64, 64)), on the 28x28 digits (784-32-32-10, 1,797 rows)
   and on 20,000 rows of those (drawn with replacement, Gaussian noise of 0.05 added; the
   scoring uses the default 8,192 of them), in dense epochs; on digits also with today's
   defaults (at most 200 dense epochs, batch min(200, n), the stopping rule).
2. First fit in a fresh process against the same fit again (digits, defaults, one thread),
   and the import times of ``sk_ecprune``, ``sk_ecprune.engine`` and
   ``sk_ecprune.estimators``, each in a fresh process (best of three).
3. The dense fit (``prune_ratio=0``) against scikit-learn's ``MLPRegressor`` with the same
   settings: (64, 64), ReLU, Adam, lr 1e-3, batch 128, 8 epochs, 16,000 x 24, medians of
   interleaved repeats, one thread each (torch's, and numpy's BLAS).
4. ``GridSearchCV(n_jobs=2)`` on digits: ``PrunedMLPClassifier`` (defaults, hidden (64, 64))
   over 8 values of ``prune_ratio``, without and with ``memory=`` (the dense-stage cache),
   against scikit-learn's ``MLPClassifier`` (hidden (64, 64), otherwise its defaults) over
   8 values of ``alpha``, the same 3 folds, refit included: wall-clock seconds; and the
   package's search with today's defaults and ``memory=``.

"Defaults" in rows 1, 2 and 4 are the estimators' defaults before issue #22 (the paper's
training protocol, :data:`PAPER_TRAINING`), passed explicitly so that the recorded results
stay reproducible.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

from pathlib import Path

import numpy as np
import torch

from _common import write_section  # noqa: E402  (benchmarks/ is the script's path)

#: The estimators' training defaults until issue #22 (the paper's protocol).
PAPER_TRAINING = dict(activation="prelu", batch_size=32, max_epochs=15, finetune_epochs=15,
                      n_iter_no_change=None, weight_decay=0.0)
#: The estimators' defaults since issue #22 (nothing passed).
DEFAULTS = {}

README = Path(__file__).with_name("README.md")
ROOT = Path(__file__).resolve().parents[1]


def digits8():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y


def digits28(n=None, seed=0):
    from sk_ecprune.datasets import load_digits_28x28

    X, y = load_digits_28x28(return_X_y=True)
    X = X.astype(np.float32)
    if n is None:
        return X, y
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(X), n)
    noise = 0.05 * rng.standard_normal((n, X.shape[1])).astype(np.float32)
    return np.clip(X[rows] + noise, 0, None), y[rows]


def pruning_cost(X, y, hidden, seeds, training=PAPER_TRAINING):
    """``(pruning / dense stage, pruning in dense epochs)`` of each seed's fit with the
    ``training`` parameters."""
    from sk_ecprune import PrunedMLPClassifier

    PrunedMLPClassifier(hidden_layer_sizes=hidden, max_epochs=1, finetune_epochs=1,
                        random_state=0).fit(X[:300], y[:300])  # warm-up
    ratios = []
    for seed in seeds:
        est = PrunedMLPClassifier(**training, hidden_layer_sizes=hidden,
                                  random_state=seed).fit(X, y)
        dense = sum(epoch["dur"] for epoch in est.history_dense_)
        epoch = dense / len(est.history_dense_)
        ratios.append((est.pruning_time_ / dense, est.pruning_time_ / epoch, est.pruning_time_))
    return ratios


FIRST_FIT = """
import json, sys, time
start = time.perf_counter()
import sk_ecprune.estimators
imported = time.perf_counter() - start
import torch
torch.set_num_threads(1)
from sklearn.datasets import load_digits
X, y = load_digits(return_X_y=True)
X = X / 16
times = []
for _ in range(3):
    start = time.perf_counter()
    sk_ecprune.estimators.PrunedMLPClassifier(
        random_state=0, activation="prelu", batch_size=32, max_epochs=15, finetune_epochs=15,
        n_iter_no_change=None, weight_decay=0.0).fit(X, y)
    times.append(time.perf_counter() - start)
print(json.dumps([imported, times]))
"""


def fresh(code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def first_fit(processes):
    """``(first fit - best later fit)`` of each fresh process, and its import time."""
    runs = [fresh(FIRST_FIT) for _ in range(processes)]
    return [(times[0] - min(times[1:]), imported, times) for imported, times in runs]


def import_time(module, repeats=3):
    code = (f"import time; s = time.perf_counter(); import {module}; "
            f"print(time.perf_counter() - s)")
    return min(fresh(code) for _ in range(repeats))


def dense_against_sklearn(repeats, n=16_000, d=24, epochs=8):
    from sklearn.datasets import make_regression
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from threadpoolctl import threadpool_limits

    from sk_ecprune import PrunedMLPRegressor

    X, y = make_regression(n_samples=n, n_features=d, noise=1.0, random_state=0)
    X, y = X.astype(np.float32), ((y - y.mean()) / y.std()).astype(np.float32)
    ours = PrunedMLPRegressor(hidden_layer_sizes=(64, 64), activation="relu", prune_ratio=0,
                              max_epochs=epochs, finetune_epochs=0, batch_size=128,
                              random_state=0, n_iter_no_change=None, weight_decay=0.0)
    theirs = MLPRegressor(hidden_layer_sizes=(64, 64), activation="relu", alpha=0.0,
                          batch_size=128, learning_rate_init=1e-3, max_iter=epochs, tol=0.0,
                          n_iter_no_change=epochs + 1, random_state=0)
    ours.fit(X[:500], y[:500])
    times = {"sk_ecprune": [], "scikit-learn": []}
    # one thread each (torch's and numpy's BLAS): on a shared machine, threads that wait
    # for a busy core distort the comparison far more than they speed either side up
    torch.set_num_threads(1)
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(repeats):
            for name, est in (("sk_ecprune", ours), ("scikit-learn", theirs)):
                start = time.perf_counter()
                est.fit(X, y)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def grid_searches():
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.neural_network import MLPClassifier

    from sk_ecprune import PrunedMLPClassifier

    X, y = digits8()
    folds = StratifiedKFold(3, shuffle=True, random_state=0)
    ratios = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    alphas = list(np.logspace(-5, 2, 8))
    seconds = {}
    with tempfile.TemporaryDirectory() as cache, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        searches = {
            "PrunedMLPClassifier, the paper's training, 8 prune_ratio": GridSearchCV(
                PrunedMLPClassifier(**PAPER_TRAINING, random_state=0), {"prune_ratio": ratios},
                cv=folds,
                n_jobs=2),
            "PrunedMLPClassifier, the paper's training, 8 prune_ratio, memory=": GridSearchCV(
                PrunedMLPClassifier(**PAPER_TRAINING, random_state=0, memory=cache),
                {"prune_ratio": ratios},
                cv=folds, n_jobs=2),
            "PrunedMLPClassifier, today's defaults, 8 prune_ratio, memory=": GridSearchCV(
                PrunedMLPClassifier(**DEFAULTS, random_state=0, memory=cache + "/defaults"),
                {"prune_ratio": ratios}, cv=folds, n_jobs=2),
            "scikit-learn MLPClassifier, 8 alpha": GridSearchCV(
                MLPClassifier(hidden_layer_sizes=(64, 64), random_state=0), {"alpha": alphas},
                cv=folds, n_jobs=2),
        }
        for name, search in searches.items():
            start = time.perf_counter()
            search.fit(X, y)
            seconds[name] = (time.perf_counter() - start, search.best_score_)
            print(f"{name}: {seconds[name][0]:.1f} s, best accuracy {search.best_score_:.4f}",
                  flush=True)
    return seconds


def measure(quick):
    torch.set_num_threads(1)
    seeds = [0] if quick else [0, 1, 2]
    results = {"digits (64, 64)": pruning_cost(*digits8(), (64, 64), seeds)}
    results["digits (64, 64), today's defaults"] = pruning_cost(*digits8(), (64, 64), seeds,
                                                                DEFAULTS)
    print("pruning, digits:", results, flush=True)
    results["784-32-32-10, 1,797 rows"] = pruning_cost(*digits28(), (32, 32), seeds)
    print("pruning, 784:", results, flush=True)
    if not quick:
        results["784-32-32-10, 20,000 rows"] = pruning_cost(*digits28(20_000), (32, 32), [0])
        print("pruning, 784 at 20,000:", results, flush=True)
    torch.set_num_threads(os.cpu_count() or 1)
    first = first_fit(2 if quick else 3)
    print("first fit:", first, flush=True)
    imports = {m: import_time(m) for m in ("sk_ecprune", "sk_ecprune.engine",
                                            "sk_ecprune.estimators")}
    print("imports:", imports, flush=True)
    dense = dense_against_sklearn(3 if quick else 5)
    print("dense:", dense, flush=True)
    grid = {} if quick else grid_searches()
    return results, first, imports, dense, grid


def report(results, first, imports, dense, grid):
    lines = [
        "## Where users wait (`bench_speed.py`)",
        "",
        "Command: `flock /tmp/sk_ecprune_bench.lock python benchmarks/bench_speed.py` "
        f"({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d')}). Ratios within this one run; the machine was shared "
        "with other jobs, so seconds are for scale only.",
        "",
        "| what | measured | target |",
        "|---|---|---|",
    ]
    targets = {"digits (64, 64)": "at most 0.5x",
               "digits (64, 64), today's defaults": "at most 0.5x", "784-32-32-10, 1,797 rows": "at most 5",
               "784-32-32-10, 20,000 rows": "at most 2"}
    for name, rows in results.items():
        dense_x = ", ".join(f"{r[0]:.2f}x" for r in rows)
        epochs = ", ".join(f"{r[1]:.1f}" for r in rows)
        what = "the dense stage" if name.startswith("digits") else "dense epochs"
        shown = dense_x if name.startswith("digits") else epochs
        protocol = "" if "today's" in name else ", the paper's training (15 epochs, batch 32)"
        lines.append(f"| EC-OBS pruning (5 steps), {name}{protocol}, against {what} "
                     f"(one thread, {len(rows)} seed(s)) | {shown} | {targets[name]} |")
    lines.append("| first fit in a fresh process minus the best later fit (digits, defaults) | "
                 + ", ".join(f"{f[0]:+.2f} s" for f in first) + " | at most 0.3 s |")
    lines.append("| import time: " + ", ".join(f"`{m}` {t:.2f} s" for m, t in imports.items())
                 + " (fresh process, best of 3) | | |")
    ratio = dense["sk_ecprune"] / dense["scikit-learn"]
    lines.append(f"| dense fit against `MLPRegressor` ((64, 64), batch 128, 8 epochs, "
                 f"16,000 x 24, one thread; {dense['sk_ecprune']:.2f} s against {dense['scikit-learn']:.2f}"
                 f" s) | {ratio:.2f}x | at most 1.0x |")
    for name, (seconds, score) in grid.items():
        lines.append(f"| `GridSearchCV(n_jobs=2)`, digits, 3 folds + refit: {name} | "
                     f"{seconds:.1f} s (best accuracy {score:.3f}) | |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds, no grid; print only")
    args = parser.parse_args()
    lines = report(*measure(args.quick))
    print("\n".join(lines))
    if not args.quick:
        write_section("bench_speed", lines, README)
        print(f"wrote {README}")


if __name__ == "__main__":
    main()
