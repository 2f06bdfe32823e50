"""The command line, ``python -m sk_ecprune``: ``demo``, ``fit`` and ``curve``.

- ``demo``: the digits demonstration (:mod:`._demo`);
- ``fit DATA.csv --target COLUMN``: a pruned network on the user's data, its report, and
  the model written as ``.joblib``, ``.skops`` or ``.onnx`` (:mod:`._fit`);
- ``curve DATA.csv --target COLUMN --out curve.png``: the cross-validated pruning curve
  (:mod:`._curve`).

Every bad argument ends as argparse's usage message and exit status 2, never a traceback:
what can be checked from the argument alone is an argparse ``type`` or ``choices``, what
needs the data raises :class:`._args.UsageError`, handed to ``parser.error``. ``--quick``
only fills the options that were not given.
"""

import argparse
import sys

from .. import __version__
from ..engine import NEURON_SCORERS, SCORERS
from ._args import (
    MODEL_DEFAULTS,
    QUICK_MODEL_DEFAULTS,
    CommandError,
    UsageError,
    add_model_options,
    csv_file,
    fill_defaults,
    positive_int,
    pruning_ratio,
    test_fraction,
    writable_path,
)
from ._demo import add_demo_parser, format_table, run_demo, run_demo_command
from ._model import MODEL_SUFFIXES, OUT_NEEDS

__all__ = ["build_parser", "format_table", "main", "run_demo"]

_IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
_IMAGE_NEEDS = {s: (("matplotlib",), "pip install 'sk_ecprune[plot]'") for s in _IMAGE_SUFFIXES}


def _add_data_options(parser):
    parser.add_argument("data", type=csv_file, metavar="DATA.csv",
                        help="a CSV file with a header row; every column but the target "
                             "(and --drop) is a numeric feature")
    parser.add_argument("--target", required=True, metavar="COLUMN",
                        help="the column to predict")
    parser.add_argument("--task", choices=["auto", "classification", "regression"],
                        default="auto", help="auto (default): classification for a text "
                        "target or one of at most 20 distinct integers, else regression")
    parser.add_argument("--drop", nargs="+", metavar="COLUMN", help="columns to ignore")
    parser.add_argument("--quick", action="store_true",
                        help="a seconds-long smoke run: a 16-unit network, 2 epochs, where "
                             "not given explicitly")


def _add_fit_parser(commands, methods):
    fit = commands.add_parser(
        "fit", help="train, prune and fine-tune a network on a CSV file; write the model",
        description="Hold out a test split, fit a StandardScaler + pruned MLP pipeline on "
                    "the rest, print the test score next to the dense network's, the "
                    "sparsity, the model size and the time, and write the model.")
    _add_data_options(fit)
    add_model_options(fit, methods)
    search = fit.add_argument_group("evaluation and output")
    search.add_argument("--test-size", type=test_fraction, default=0.25, metavar="F",
                        help="held-out fraction of the rows (default 0.25)")
    search.add_argument("--cv", type=positive_int, metavar="K",
                        help="choose the prune ratio among --ratios by K-fold "
                             "cross-validation on the training rows")
    search.add_argument("--ratios", type=pruning_ratio, nargs="+", metavar="R",
                        help="with --cv: the prune ratios searched (default 0.5 0.7 0.8 0.9)")
    search.add_argument("--out", type=writable_path(MODEL_SUFFIXES, OUT_NEEDS),
                        metavar="MODEL", help="write the fitted model: model.joblib, "
                        "model.skops or model.onnx (by suffix)")
    return fit


def _add_curve_parser(commands, methods):
    curve = commands.add_parser(
        "curve", help="draw the cross-validated pruning curve of a CSV file",
        description="Cross-validate the pruned network at each ratio and method and draw "
                    "the mean score against the pruning ratio, one line per method.")
    _add_data_options(curve)
    add_model_options(curve, methods, with_ratio=False)
    curve.add_argument("--ratios", type=pruning_ratio, nargs="+", metavar="R",
                       help="prune ratios (default 0.5 0.7 0.8 0.9 0.95)")
    curve.add_argument("--methods", nargs="+", choices=methods, metavar="METHOD",
                       help="scoring methods, among " + ", ".join(methods)
                       + " (default ec_obs magnitude)")
    curve.add_argument("--cv", type=positive_int, default=3, metavar="K",
                       help="folds (default 3)")
    curve.add_argument("--yscale", choices=["linear", "log"],
                       help="vertical axis (default: linear for accuracy and R²)")
    curve.add_argument("--out", type=writable_path(_IMAGE_SUFFIXES, _IMAGE_NEEDS),
                       required=True, metavar="IMAGE", help="the figure: curve.png (.pdf, .svg)")
    return curve


def build_parser():
    """The parser of ``python -m sk_ecprune`` and its subcommands."""
    parser = argparse.ArgumentParser(prog="python -m sk_ecprune")
    parser.add_argument("--version", action="version", version=f"sk_ecprune {__version__}")
    commands = parser.add_subparsers(dest="command")
    methods = sorted(SCORERS)
    return parser, {"demo": add_demo_parser(commands, methods),
                    "fit": _add_fit_parser(commands, methods),
                    "curve": _add_curve_parser(commands, methods)}


def _check_explicit_options(args, sub):
    """Checks across the options as given (before the defaults are filled in)."""
    if args.command == "fit":
        if args.cv is None and args.ratios is not None:
            sub.error("--ratios needs --cv K (without it, give one --prune-ratio)")
        if args.cv is not None and args.prune_ratio is not None:
            sub.error("--cv searches over --ratios; give --ratios instead of --prune-ratio")
        if args.cv is not None and args.cv < 2:
            sub.error(f"argument --cv: needs at least 2 folds, got {args.cv}")
    if args.command == "curve" and args.cv < 2:
        sub.error(f"argument --cv: needs at least 2 folds, got {args.cv}")


def _check_granularity(args, sub):
    methods = [args.method] if args.command == "fit" else args.methods
    if args.granularity == "neuron" and any(m not in NEURON_SCORERS for m in methods):
        sub.error(f"--granularity neuron removes whole units with one of "
                  f"{sorted(NEURON_SCORERS)}; got --method {' '.join(methods)}")


_COMMAND_DEFAULTS = {"fit": {"ratios": [0.5, 0.7, 0.8, 0.9]},
                     "curve": {"ratios": [0.5, 0.7, 0.8, 0.9, 0.95],
                               "methods": ["ec_obs", "magnitude"]}}


def main(argv=None):
    """Entry point of ``python -m sk_ecprune``; returns the exit status."""
    from ._curve import run_curve
    from ._fit import run_fit

    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "demo":
        return run_demo_command(args)
    sub = subparsers[args.command]
    _check_explicit_options(args, sub)
    fill_defaults(args, {**(QUICK_MODEL_DEFAULTS if args.quick else MODEL_DEFAULTS),
                         **_COMMAND_DEFAULTS[args.command]})
    _check_granularity(args, sub)
    try:
        return {"fit": run_fit, "curve": run_curve}[args.command](args)
    except UsageError as exc:
        sub.error(str(exc))
    except CommandError as exc:
        print(f"{sub.prog}: error: {exc}", file=sys.stderr)
        return 1
