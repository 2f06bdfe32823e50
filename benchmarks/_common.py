"""Helpers every benchmark script shares: the paper's tasks and data, the estimators and
their evaluation, running fits in parallel, writing CSV rows, figures, tables and README
sections, and the command-line scaffolding.

The scripts import it as ``from _common import ...``: Python puts a script's own directory
(``benchmarks/``) first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import time
from pathlib import Path

import numpy as np

README = Path(__file__).with_name("README.md")
RESULTS_DIR = Path(__file__).with_name("results")
REPOSITORY = Path(__file__).resolve().parents[1]
PDE_SMALL, PDE_WIDE = (32, 32, 32), (64, 32, 32, 16, 16)


# ----------------------------------------------------------------------------- tasks


def classification_task(name, dataset, *, seeds, ratios, methods=(), hidden=(32, 32),
                        nonlinear_seeds=None, nonlinear_ratios=None, epochs=15, batch_size=32,
                        n_rows=None):
    """A task of the paper's classification setting (digits, its 28x28 upsampling, or
    ``"breast_cancer"``, standardised)."""
    return dict(name=name, kind="classification", dataset=dataset, hidden=tuple(hidden),
                noise=None, seeds=list(seeds), ratios=list(ratios), methods=list(methods),
                nonlinear_seeds=nonlinear_seeds, nonlinear_ratios=nonlinear_ratios,
                epochs=epochs, batch_size=batch_size, n_rows=n_rows)


def pde_task(hidden, noise, *, seeds, ratios, methods=(), nonlinear_seeds=None,
             nonlinear_ratios=None, n_simulations=100, epochs=15, batch_size=128):
    """A task of the diffusion-sorption surrogate (68 inputs, one output)."""
    arch = "-".join(str(h) for h in (68, *hidden, 1))
    return dict(name=f"pde_{arch}_noise{noise:g}", kind="regression", dataset="diffusion_sorption",
                hidden=tuple(hidden), noise=noise, seeds=list(seeds), ratios=list(ratios),
                methods=list(methods), nonlinear_seeds=nonlinear_seeds,
                nonlinear_ratios=nonlinear_ratios, epochs=epochs, batch_size=batch_size,
                n_simulations=n_simulations)


def load_task_data(task):
    """(X_train, X_test, y_train, y_test, y_test_clean) for a task, split with a fixed seed."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    if task["kind"] == "classification":
        if task["dataset"] == "digits":
            from sklearn.datasets import load_digits

            X, y = load_digits(return_X_y=True)
            X = (X / 16.0).astype(np.float32)
        elif task["dataset"] == "breast_cancer":
            from sklearn.datasets import load_breast_cancer

            X, y = load_breast_cancer(return_X_y=True)
        else:
            from sk_ecprune.datasets import load_digits_28x28

            X, y = load_digits_28x28(return_X_y=True)
        if task.get("n_rows"):
            X, y = X[: task["n_rows"]], y[: task["n_rows"]]
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y,
                                                  random_state=0)
        if task["dataset"] == "breast_cancer":  # standardised on the training split
            from sklearn.preprocessing import StandardScaler

            scaler = StandardScaler().fit(X_tr)
            X_tr, X_te = (scaler.transform(X).astype(np.float32) for X in (X_tr, X_te))
        return X_tr, X_te, y_tr, y_te, None
    from sk_ecprune.datasets import make_diffusion_sorption

    n_sim = task["n_simulations"]
    X, y, groups = make_diffusion_sorption(n_samples=n_sim, noise=task["noise"],
                                           return_groups=True, random_state=0)
    y_clean = y
    if task["noise"]:
        # Same seed, noise drawn last: identical X and clean target (see the generator).
        _, y_clean = make_diffusion_sorption(n_samples=n_sim, random_state=0)
    train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=0)
                       .split(X, y, groups))
    return X[train], X[test], y[train], y[test], y_clean[test]


# ------------------------------------------------------------------------ estimators


def n_weights(n_in, hidden, n_out):
    sizes = [n_in, *hidden, n_out]
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def narrow_widths(n_in, hidden, n_out, target):
    """Hidden widths ``max(1, round(alpha * h))`` whose weight count is closest to ``target``.

    ``alpha`` solves ``n_weights(alpha * hidden) = target`` for real widths (a quadratic in
    alpha, solved by bisection); the rounded candidates around it are then compared by their
    exact counts, so the match is the best one reachable with uniform scaling.
    """
    def count(alpha):
        sizes = [n_in, *(alpha * h for h in hidden), n_out]
        return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))

    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    best = None
    for alpha in np.linspace(0.8 * lo, 1.2 * lo + 1e-9, 81):
        widths = tuple(max(1, round(alpha * h)) for h in hidden)
        err = abs(n_weights(n_in, widths, n_out) - target)
        if best is None or err < best[0]:
            best = (err, widths)
    return best[1]


#: The paper's training protocol, which the estimators' defaults no longer are: every epoch
#: runs (no stopping rule), no weight penalty; with the task's epochs and batch size.
PAPER_TRAINING = dict(activation="prelu", optimizer="adam", lr=1e-3, n_iter_no_change=None,
                      weight_decay=0.0)


def make_estimator(task, **params):
    """The paper's estimator for ``task`` (15 + 15 epochs, Adam, PReLU, every epoch run, no
    weight penalty), one-shot Euclidean EC unless ``params`` say otherwise; the regressor
    behind a ``StandardScaler``.

    A task may set its own protocol: ``dense_epochs`` (the dense stage's ``max_epochs``;
    default ``epochs``, which is then the fine-tuning's) and ``params`` (estimator parameters
    of every fit of the task, e.g. ``early_stopping``), both below ``params`` here."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sk_ecprune import PrunedMLPClassifier, PrunedMLPRegressor

    base = dict(PAPER_TRAINING, hidden_layer_sizes=task["hidden"],
                max_epochs=task.get("dense_epochs", task["epochs"]),
                finetune_epochs=task["epochs"], batch_size=task["batch_size"], scope="global",
                output_metric="euclidean", prune_steps=1, gradual=False)
    base.update(task.get("params", {}))
    base.update(params)
    if task["kind"] == "classification":
        return PrunedMLPClassifier(**base)
    return make_pipeline(StandardScaler(), PrunedMLPRegressor(**base))


def fit_and_score(task, data, params, threads=1, keep_pipeline=False):
    """Fit ``make_estimator(task, **params)`` on the training split; return the fitted
    estimator's last step, the pruned MLP (or, with ``keep_pipeline``, the whole estimator),
    and the measurements every benchmark keeps (:func:`score_fitted`) with the fit time."""
    import torch

    torch.set_num_threads(threads)
    estimator = make_estimator(task, **params)
    start = time.perf_counter()
    estimator.fit(data[0], data[2])
    elapsed = time.perf_counter() - start
    scores = dict(score_fitted(task, data, estimator), fit_time_s=elapsed)
    final = estimator[-1] if hasattr(estimator, "steps") else estimator
    return (estimator if keep_pipeline else final), scores


def score_fitted(task, data, estimator):
    """Test loss (cross-entropy or MSE), accuracy or the MSE against the noise-free target,
    and training loss of a fitted estimator (or pipeline)."""
    from sklearn.metrics import accuracy_score, log_loss, mean_squared_error

    X_tr, X_te, y_tr, y_te, y_te_clean = data
    scores = dict(loss_clean=None, accuracy=None)
    final = estimator[-1] if hasattr(estimator, "steps") else estimator
    if task["kind"] == "classification":
        proba = estimator.predict_proba(X_te)
        scores["loss"] = log_loss(y_te, proba, labels=final.classes_)
        scores["accuracy"] = accuracy_score(y_te, final.classes_[proba.argmax(1)])
        scores["train_loss"] = log_loss(y_tr, estimator.predict_proba(X_tr),
                                        labels=final.classes_)
    else:
        pred = estimator.predict(X_te)
        scores["loss"] = mean_squared_error(y_te, pred)
        scores["loss_clean"] = mean_squared_error(y_te_clean, pred)
        scores["train_loss"] = mean_squared_error(y_tr, estimator.predict(X_tr))
    return scores


def architecture(data, task):
    """``"n_in-h1-...-n_out"`` of a task's network on its data."""
    X_tr, y_tr = data[0], data[2]
    n_out = len(np.unique(y_tr)) if task["kind"] == "classification" else 1
    return "-".join(str(h) for h in (X_tr.shape[1], *task["hidden"], n_out))


# ------------------------------------------------------------------------------- runs


def run_parallel(function, task, data, jobs, n_jobs, **kwargs):
    """``[function(task, data, job, **kwargs) for job in jobs]``, in ``n_jobs`` processes."""
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(function)(task, data, job, **kwargs) for job in jobs)


def run_dense_first(task, run_job, jobs, n_jobs, memory_dir, log):
    """Every job of ``task`` through ``run_job``, sharing one dense-stage cache: the
    ``dense`` jobs first (they fill the cache), then the rest; returns their CSV rows."""
    data = load_task_data(task)
    memory = os.path.join(memory_dir, task["name"])
    log(f"[{task['name']}] {len(jobs)} fits, n_train={len(data[0])}")
    start = time.perf_counter()
    dense = [j for j in jobs if j[0] == "dense"]
    rows = run_parallel(run_job, task, data, dense, n_jobs, memory=memory)
    rows += run_parallel(run_job, task, data, [j for j in jobs if j[0] != "dense"], n_jobs,
                         memory=memory)
    log(f"[{task['name']}] done in {time.perf_counter() - start:.0f} s")
    return rows


def write_rows(path, rows, columns, append):
    """Write (or append) ``rows`` (dicts) to the CSV file ``path`` with these ``columns``."""
    import pandas as pd

    frame = pd.DataFrame(rows, columns=columns)
    frame.to_csv(path, mode="a" if append else "w", header=not append, index=False)


def environment_line():
    """One line naming the versions and CPUs a run used, for its log."""
    import sklearn
    import skorch
    import torch

    return (f"python {platform.python_version()} torch {torch.__version__} skorch "
            f"{skorch.__version__} sklearn {sklearn.__version__}, {os.cpu_count()} cpu(s)")


class Log:
    """Print and keep every line, for a run's ``run.log``."""

    def __init__(self):
        self.lines = []

    def __call__(self, message):
        print(message, flush=True)
        self.lines.append(message)

    def write(self, path, append=False):
        with open(path, "a" if append else "w") as handle:
            handle.write("\n".join(self.lines) + "\n")


def parser(description, modes, default_mode="run"):
    """The options every quality benchmark takes: a mode, --tasks, --n-jobs, --out-dir,
    --plot-only. ``modes`` maps each ``--MODE`` flag to its help text."""
    result = argparse.ArgumentParser(description=description)
    group = result.add_mutually_exclusive_group()
    for mode, help_text in modes.items():
        group.add_argument(f"--{mode}", action="store_const", const=mode, dest="mode",
                           help=help_text)
    result.set_defaults(mode=default_mode)
    result.add_argument("--tasks", nargs="+", help="only these task names")
    result.add_argument("--n-jobs", type=int, default=1, help="parallel fits (joblib)")
    result.add_argument("--plot-only", action="store_true",
                        help="only redraw the figures and tables from OUT_DIR/results.csv")
    return result


def select_tasks(tasks, names, parser_):
    """The tasks named in ``names`` (all if None); an error lists the known names."""
    if not names:
        return tasks
    unknown = set(names) - {t["name"] for t in tasks}
    if unknown:
        parser_.error(f"unknown tasks {sorted(unknown)}; choose from {[t['name'] for t in tasks]}")
    return [t for t in tasks if t["name"] in names]


# ------------------------------------------------------------------- figures, tables


def fmt(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3g}" if abs(value) >= 1e-3 else f"{value:.2e}"


def make_outputs(out_dir, log, plot, tables):
    """One PNG per task (``plot(frame, task_name, path)``) and ``summary.md``
    (``tables(frame) -> str``) from ``out_dir/results.csv``."""
    import pandas as pd

    frame = pd.read_csv(out_dir / "results.csv")
    for task_name in frame.task.unique():
        path = out_dir / f"{task_name}.png"
        plot(frame, task_name, path)
        log(f"wrote {shown(path)} ({path.stat().st_size // 1024} KB)")
    (out_dir / "summary.md").write_text(tables(frame))
    log(f"wrote {shown(out_dir / 'summary.md')}")


def shown(path):
    """``path`` as a log line names it: relative to the repository when inside it, so that
    committed logs do not name the machine's directories."""
    path = Path(path).resolve()
    return str(path.relative_to(REPOSITORY)) if path.is_relative_to(REPOSITORY) else str(path)


def write_section(mark, lines, readme=README):
    """Replace the block ``<!-- mark --> ... <!-- /mark -->`` of ``readme`` by ``lines``
    (append it if absent): each speed benchmark writes its section of benchmarks/README.md."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = "\n".join([f"<!-- {mark} -->", *lines, f"<!-- /{mark} -->"])
    pattern = re.compile(rf"<!-- {re.escape(mark)} -->.*<!-- /{re.escape(mark)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    readme.write_text(text)
