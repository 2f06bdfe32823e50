"""``python -m sk_ecprune demo``: EC-OBS, EC and magnitude pruning on the digits data.

The demo is the paper's classification setting on scikit-learn's embedded digits data: a
64-32-32-10 PReLU network trained 15 epochs, pruned at several ratios with EC and with
magnitude pruning, and fine-tuned 15 epochs. It prints the test loss (cross-entropy) and
accuracy of the dense network, of the network right after pruning, and after fine-tuning,
averaged over seeds.
"""

import time

import numpy as np
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split

from ..estimators import PrunedMLPClassifier
from ._args import fill_defaults, positive_int, pruning_ratio


def _evaluate(est, X, y):
    """Test cross-entropy and accuracy of a fitted classifier."""
    proba = est.predict_proba(X)
    return log_loss(y, proba, labels=est.classes_), accuracy_score(y, est.predict(X))


def run_demo(seeds=(0, 1, 2, 3, 4), ratios=(0.5, 0.7, 0.9),
             methods=("ec_obs", "ec", "magnitude"), epochs=15, hidden_layer_sizes=(32, 32)):
    """Train, prune and fine-tune on digits; return one result dict per (seed, method, ratio).

    For each seed the dense network is trained once (``prune_ratio=0``); each pruned model
    is a clone with the same ``random_state``, so its dense stage is bit-for-bit the same
    network, which is checked through the training loss before pruning.
    """
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16.0, y, test_size=0.25, stratify=y, random_state=0
    )
    base = PrunedMLPClassifier(hidden_layer_sizes=hidden_layer_sizes, activation="prelu",
                               max_epochs=epochs, finetune_epochs=epochs, batch_size=32,
                               n_iter_no_change=None, weight_decay=0.0)  # the paper's
    rows = []
    for seed in seeds:
        dense = clone(base).set_params(prune_ratio=0.0, finetune_epochs=0, random_state=seed)
        dense.fit(X_train, y_train)
        dense_scores = _evaluate(dense, X_test, y_test)
        for method in methods:
            for ratio in ratios:
                row = {"seed": seed, "method": method, "ratio": ratio}
                row["dense_loss"], row["dense_acc"] = dense_scores
                for stage, finetune_epochs in (("pruned", 0), ("tuned", epochs)):
                    est = clone(base).set_params(prune_ratio=ratio, method=method,
                                                 finetune_epochs=finetune_epochs,
                                                 random_state=seed)
                    est.fit(X_train, y_train)
                    if est.loss_before_pruning_ != dense.loss_before_pruning_:
                        raise RuntimeError("the dense stage was not reproduced across fits")
                    row[f"{stage}_loss"], row[f"{stage}_acc"] = _evaluate(est, X_test, y_test)
                    row["sparsity"] = est.sparsity_
                rows.append(row)
    return rows


def _mean_std(rows, key):
    values = np.array([r[key] for r in rows], dtype=float)
    return values.mean(), values.std()


def format_table(rows, n_seeds):
    """The demo's result table, means over seeds (± standard deviation for the losses)."""
    head = (f"{'method':<10}{'ratio':>6}{'sparsity':>10}  | {'test loss':>15}{'acc':>7}  |"
            f" {'test loss':>15}{'acc':>7}")
    lines = [f"{'':<26}  | {'right after pruning':^22}  | {'after fine-tuning':^22}", head,
             "-" * len(head)]
    loss, loss_sd = _mean_std(rows, "dense_loss")
    acc, _ = _mean_std(rows, "dense_acc")
    dense = f"{loss:8.3f} ±{loss_sd:5.3f}{acc:7.1%}"
    lines.append(f"{'dense':<10}{0:>6.2f}{0:>10.1%}  | {dense}  | {'(not pruned)':^22}")
    keys = sorted({(r["method"], r["ratio"]) for r in rows}, key=lambda k: (k[1], k[0]))
    for method, ratio in keys:
        group = [r for r in rows if r["method"] == method and r["ratio"] == ratio]
        cells = []
        for stage in ("pruned", "tuned"):
            loss, loss_sd = _mean_std(group, f"{stage}_loss")
            acc, _ = _mean_std(group, f"{stage}_acc")
            cells.append(f"{loss:8.3f} ±{loss_sd:5.3f}{acc:7.1%}")
        sparsity, _ = _mean_std(group, "sparsity")
        lines.append(f"{method:<10}{ratio:>6.2f}{sparsity:>10.1%}  | {cells[0]}  | {cells[1]}")
    lines.append(f"(mean ± standard deviation over {n_seeds} seed(s))")
    return "\n".join(lines)


QUICK_DEFAULTS = {"seeds": 1, "epochs": 2, "ratios": [0.5, 0.9],
                  "methods": ["ec_obs", "ec", "magnitude"]}
DEFAULTS = {"seeds": 5, "epochs": 15, "ratios": [0.5, 0.7, 0.9],
            "methods": ["ec_obs", "ec", "magnitude"]}


def add_demo_parser(commands, methods):
    """The ``demo`` subcommand; options left out take ``DEFAULTS`` (``QUICK_DEFAULTS``
    with ``--quick``, which fills only what was not given)."""
    demo = commands.add_parser(
        "demo", help="EC vs magnitude pruning on the digits data (about a minute)",
        description="Train the digits 64-32-32-10 PReLU network, prune it at several "
                    "ratios with each method, fine-tune, and print test loss and accuracy.",
    )
    demo.add_argument("--seeds", type=positive_int, metavar="N",
                      help="number of seeds (default 5; --quick: 1)")
    demo.add_argument("--ratios", type=pruning_ratio, nargs="+", metavar="R",
                      help="pruning ratios in [0, 1) (default 0.5 0.7 0.9; --quick: 0.5 0.9)")
    demo.add_argument("--methods", nargs="+", choices=methods, metavar="METHOD",
                      help="scoring methods, among " + ", ".join(methods)
                      + " (default ec_obs ec magnitude)")
    demo.add_argument("--epochs", type=positive_int, metavar="N",
                      help="epochs of training and of fine-tuning (default 15; --quick: 2)")
    demo.add_argument("--quick", action="store_true",
                      help="a seconds-long smoke run: 1 seed, 2 epochs, ratios 0.5 and 0.9, "
                           "where not given explicitly")
    return demo


def run_demo_command(args):
    """The ``demo`` command; returns the exit status."""
    fill_defaults(args, QUICK_DEFAULTS if args.quick else DEFAULTS)
    print(f"Digits (scikit-learn; 1347 training / 450 test images), 64-32-32-10 PReLU "
          f"network: {args.epochs} epochs of training, then the default schedule: pruning in "
          f"5 steps with {args.epochs} epochs of fine-tuning spread between them (\"right "
          "after pruning\": the same 5 steps without fine-tuning).", flush=True)
    start = time.perf_counter()
    rows = run_demo(seeds=range(args.seeds), ratios=args.ratios, methods=args.methods,
                    epochs=args.epochs)
    print(format_table(rows, args.seeds))
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0
