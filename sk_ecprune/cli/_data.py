"""A CSV file as X and y, and the task its target asks for.

The file is read with the standard library (no pandas needed): a header row of column
names, then one row per sample. Feature columns must be numeric; a column of text (a
category, an identifier) is refused with its name, to be encoded as numbers beforehand or
left out with ``--drop``. Empty cells and NA/NaN markers are refused too: the network has
no notion of a missing value.
"""

import csv
from dataclasses import dataclass

import numpy as np

from ._args import UsageError

__all__ = ["Table", "infer_task", "read_table"]

#: Cells read as a missing value.
MISSING = {"", "na", "nan", "n/a", "null", "none", "?"}
#: A numeric target with integer values and at most this many distinct ones is a class label.
MAX_INFERRED_CLASSES = 20


@dataclass
class Table:
    """The features (float64), the target (float64 or str) and their names."""

    X: np.ndarray
    y: np.ndarray
    feature_names: list
    target: str
    target_is_numeric: bool


def _rows(path):
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path} is not a readable CSV file ({exc})") from None
    if len(rows) < 2:
        raise UsageError(f"{path} needs a header row and at least one row of data")
    header = [name.strip() for name in rows[0]]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise UsageError(f"{path}, line {line}: {len(row)} cells, the header has "
                             f"{len(header)} columns")
    duplicates = sorted({n for n in header if header.count(n) > 1})
    if duplicates:
        raise UsageError(f"{path} has duplicate column names {duplicates}")
    return header, rows[1:]


def _as_numbers(cells):
    """The column as float64, or None if a cell is not a number."""
    try:
        return np.array([float(cell) for cell in cells])
    except ValueError:
        return None


def _missing_line(cells):
    """Line number (header = 1) of the first missing cell, or None."""
    for line, cell in enumerate(cells, start=2):
        if cell.strip().lower() in MISSING:
            return line
    return None


def read_table(path, target, drop=()):
    """Read ``path``; ``target`` is y, every other column not in ``drop`` a feature.

    Raises
    ------
    UsageError
        A column that is not in the file, a missing value, a non-numeric feature column.
    """
    header, body = _rows(path)
    unknown = [name for name in [target, *drop] if name not in header]
    if unknown:
        raise UsageError(f"{path} has no column {', '.join(map(repr, unknown))}; its columns "
                         f"are {header}")
    if target in drop:
        raise UsageError(f"--drop {target!r} drops the target column")
    columns = dict(zip(header, map(list, zip(*body))))
    for name in [target] + [n for n in header if n not in drop and n != target]:
        line = _missing_line(columns[name])
        if line is not None:
            raise UsageError(f"{path}, line {line}: column {name!r} has a missing value; "
                             "fill or remove such rows first")
    features = [n for n in header if n != target and n not in drop]
    if not features:
        raise UsageError(f"{path} has no feature column left besides the target {target!r}")
    numbers = {name: _as_numbers(columns[name]) for name in features}
    text = [name for name, values in numbers.items() if values is None]
    if text:
        raise UsageError(
            f"feature columns {text} of {path} are not numeric; encode them as numbers "
            f"(e.g. one column per category) or leave them out with --drop {' '.join(text)}")
    infinite = [name for name, values in numbers.items() if not np.all(np.isfinite(values))]
    if infinite:
        raise UsageError(f"feature columns {infinite} of {path} hold infinite values")
    y = _as_numbers(columns[target])
    numeric = y is not None
    if not numeric:
        y = np.array([cell.strip() for cell in columns[target]], dtype=object)
    X = np.column_stack([numbers[name] for name in features])
    return Table(X, y, features, target, numeric)


def infer_task(table):
    """``("classification" | "regression", why)`` from the target's values."""
    if not table.target_is_numeric:
        return "classification", "its values are not numbers"
    y = table.y
    n_distinct = len(np.unique(y))
    if np.all(y == np.round(y)) and n_distinct <= MAX_INFERRED_CLASSES:
        return "classification", f"{n_distinct} distinct integer values"
    return "regression", ("numbers, not all integers" if np.any(y != np.round(y))
                          else f"{n_distinct} distinct integer values")
