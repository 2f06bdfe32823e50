"""``python -m sk_ecprune curve DATA.csv --target COLUMN --out curve.png``.

A K-fold cross-validated search over ``--ratios`` and ``--methods`` (every fit of one fold
starts from one cached dense network), drawn with
:meth:`~sk_ecprune.PruningCurveDisplay.from_cv_results`: the mean score (accuracy or R²)
against the pruning ratio, one line per method, a band of one standard deviation over the
folds. The table of the same numbers is printed.
"""

import tempfile
import time

from sklearn.model_selection import GridSearchCV

from ._args import UsageError, model_params
from ._data import read_table
from ._fit import cv_folds, resolve_task
from ._model import make_model, mlp_prefix

__all__ = ["run_curve"]


def _search(model, table, task, args, cache):
    prefix = mlp_prefix(model)
    model.set_params(**{prefix + "memory": cache})
    folds = cv_folds(task, args.cv, args.random_state)
    grid = {prefix + "prune_ratio": list(args.ratios), prefix + "method": list(args.methods)}
    return GridSearchCV(model, grid, cv=folds, refit=False).fit(table.X, table.y)


def _table_lines(display):
    lines = [f"{display.loss_name} ({display.x_label}: mean ± std over folds)"]
    for label, per_fold in display.losses["cv"].items():
        for ratio, column in zip(display.ratios, per_fold.T):
            lines.append(f"  {label:<20} {ratio:<6g} {column.mean():.4f} ± {column.std():.4f}")
    return lines


def run_curve(args):
    """The ``curve`` command; returns the exit status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..display import PruningCurveDisplay

    start = time.perf_counter()
    table = read_table(args.data, args.target, args.drop or ())
    task, task_note = resolve_task(table, args.task)
    if task == "classification" and args.cv > min(_class_counts(table.y)):
        raise UsageError(f"--cv {args.cv} needs at least {args.cv} rows of every class")
    if args.cv > len(table.y):
        raise UsageError(f"--cv {args.cv} needs at least {args.cv} rows")
    print(f"data: {args.data}: {len(table.y)} rows, target {table.target!r}: {task_note}",
          flush=True)
    model = make_model(task, model_params(args))
    with tempfile.TemporaryDirectory(prefix="sk_ecprune_cache_") as cache:
        search = _search(model, table, task, args, cache)
    display = PruningCurveDisplay.from_cv_results(search, yscale=args.yscale)
    for line in _table_lines(display):
        print(line)
    display.figure_.savefig(args.out, dpi=120)
    plt.close(display.figure_)
    print(f"wrote {args.out}")
    print(f"time: {time.perf_counter() - start:.1f} s")
    return 0


def _class_counts(y):
    labels = {}
    for label in y:
        labels[label] = labels.get(label, 0) + 1
    return labels.values()
