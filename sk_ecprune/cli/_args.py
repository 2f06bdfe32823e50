"""Argument types and shared options of the command line.

Every check that can be made from the argument alone is an argparse ``type``, so that a bad
value ends as argparse's usage message and exit status 2; checks that need the data (a
column that is not in the file) raise :class:`UsageError`, which ``main`` hands to the
same ``parser.error``.
"""

import argparse
import importlib.util
import math
from pathlib import Path

from ..engine import QUANTIZERS

__all__ = [
    "CommandError",
    "UsageError",
    "add_model_options",
    "csv_file",
    "fill_defaults",
    "model_params",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "pruning_ratio",
    "seed",
    "test_fraction",
]


class UsageError(Exception):
    """A bad argument found after parsing (it needs the data); reported as argparse does."""


class CommandError(Exception):
    """A command that could not finish (not a bad argument): message and exit status 1."""


def _number(text, kind):
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def pruning_ratio(text):
    """A fraction of the weights to remove, in [0, 1)."""
    value = _number(text, float)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"a pruning ratio must be in [0, 1), got {text}")
    return value


def test_fraction(text):
    """The held-out fraction of the rows, in (0, 1)."""
    value = _number(text, float)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1), got {text}")
    return value


def positive_float(text):
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def positive_int(text):
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def batch_size(text):
    """``auto`` or an integer >= 1 (``--batch-size``)."""
    return "auto" if text.strip().lower() == "auto" else positive_int(text)


def nonnegative_int(text):
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


seed = nonnegative_int


def quantize_bits(text):
    value = _number(text, int)
    if not 2 <= value <= 8:
        raise argparse.ArgumentTypeError(f"must be an integer from 2 to 8, got {text}")
    return value


def csv_file(text):
    """An existing, readable file."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror}") from None
    return path


def writable_path(suffixes, needs=None):
    """A type for an output path: a known suffix, an existing directory, the packages the
    suffix needs (``needs[suffix] = (modules, install hint)``) importable."""
    needs = needs or {}

    def check(text):
        path = Path(text)
        suffix = path.suffix.lower()
        if suffix not in suffixes:
            raise argparse.ArgumentTypeError(
                f"{text!r} has no known suffix; use one of {', '.join(suffixes)}")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"no such directory: {path.parent}")
        modules, hint = needs.get(suffix, ((), ""))
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise argparse.ArgumentTypeError(
                f"writing {suffix} files needs {', '.join(missing)}: {hint}")
        return path

    return check


#: --option dest -> the estimator parameter it sets. A new estimator option is one
#: ``add_argument`` line in :func:`add_model_options` and one entry here.
ESTIMATOR_PARAMS = {
    "hidden_layer_sizes": "hidden_layer_sizes",
    "activation": "activation",
    "prune_ratio": "prune_ratio",
    "method": "method",
    "granularity": "granularity",
    "epochs": "max_epochs",
    "finetune_epochs": "finetune_epochs",
    "lr": "lr",
    "batch_size": "batch_size",
    "random_state": "random_state",
    "quantize_bits": "quantize_bits",
    "quantize_method": "quantize_method",
}


def add_model_options(parser, methods, with_ratio=True):
    """The network and pruning options of ``fit`` and ``curve`` (defaults: None, filled
    by :func:`fill_defaults` so that ``--quick`` never overrides an explicit value)."""
    group = parser.add_argument_group("network and pruning")
    group.add_argument("--hidden-layer-sizes", type=positive_int, nargs="+", metavar="WIDTH",
                       help="widths of the hidden layers (default: 64 64; --quick: 16)")
    group.add_argument("--activation", choices=["prelu", "relu", "tanh", "gelu", "silu",
                                                 "logistic", "identity"],
                       help="hidden activation (default: relu)")
    if with_ratio:
        group.add_argument("--prune-ratio", type=pruning_ratio, metavar="R",
                           help="fraction of the weights removed, in [0, 1) (default: 0.8)")
        group.add_argument("--method", choices=methods,
                           help="how weights are scored (default: ec_obs)")
    group.add_argument("--granularity", choices=["weight", "neuron"],
                       help="remove single weights or whole hidden units (default: weight)")
    group.add_argument("--epochs", type=positive_int, metavar="N",
                       help="most epochs of dense training; it stops earlier when the training loss "
                            "stalls (default: 200; --quick: 2)")
    group.add_argument("--finetune-epochs", type=nonnegative_int, metavar="N",
                       help="most epochs of fine-tuning after pruning (default: 50; --quick: 2)")
    group.add_argument("--lr", type=positive_float, help="learning rate (default: 0.001)")
    group.add_argument("--batch-size", type=batch_size, metavar="N",
                       help="mini-batch size, or auto: min(200, training rows) (default: auto)")
    group.add_argument("--quantize-bits", type=quantize_bits, metavar="B",
                       help="round the final weights to B-bit grids, 2 to 8 (default: float)")
    group.add_argument("--quantize-method", choices=sorted(QUANTIZERS),
                       help="how rounding errors are compensated (default: ec_obs)")
    group.add_argument("--random-state", type=seed, metavar="SEED",
                       help="seed of the split, the initial weights and the batches (default: 0)")
    return group


#: Defaults of the model options, full and with --quick.
#: Those the estimators share take the estimators' defaults (a test checks that they agree).
MODEL_DEFAULTS = {"hidden_layer_sizes": [64, 64], "activation": "relu", "prune_ratio": 0.8,
                  "method": "ec_obs", "granularity": "weight", "epochs": 200,
                  "finetune_epochs": 50, "lr": 1e-3, "batch_size": "auto", "random_state": 0}
QUICK_MODEL_DEFAULTS = {**MODEL_DEFAULTS, "hidden_layer_sizes": [16], "epochs": 2,
                        "finetune_epochs": 2}


def fill_defaults(args, defaults):
    """Set every option left at None to its default; explicit values stay as given."""
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def model_params(args):
    """The estimator parameters the parsed options set."""
    params = {param: getattr(args, dest) for dest, param in ESTIMATOR_PARAMS.items()
              if getattr(args, dest, None) is not None}
    if "hidden_layer_sizes" in params:
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    return params
