"""A reader for a copy of MNIST the user already has (``mnist.npz`` or the IDX files)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

__all__ = ["load_mnist"]


_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_PREFIX = {"train": "train", "test": "t10k"}


def _read_idx(path):
    """Read one IDX file (optionally gzip-compressed) into an array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path} is not an IDX file (truncated header).")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    if len(raw) - header != dtype.itemsize * int(np.prod(shape)):
        raise ValueError(
            f"{path} holds {len(raw) - header} data bytes, not the {shape} it declares."
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def _find_idx(directory, split, kind):
    """Path of e.g. ``train-images-idx3-ubyte[.gz]`` (or ``train-images.idx3-ubyte``)."""
    ndim = 3 if kind == "images" else 1
    for sep in ("-", "."):
        for suffix in ("", ".gz"):
            name = f"{_IDX_PREFIX[split]}-{kind}{sep}idx{ndim}-ubyte{suffix}"
            if (directory / name).is_file():
                return directory / name
    raise FileNotFoundError(
        f"No {_IDX_PREFIX[split]}-{kind}-idx{ndim}-ubyte[.gz] file in {directory}."
    )


def _read_split(path, split):
    if path.is_dir():
        images = _read_idx(_find_idx(path, split, "images"))
        return images, _read_idx(_find_idx(path, split, "labels"))
    with np.load(path, allow_pickle=False) as archive:
        keys = (f"x_{split}", f"y_{split}")
        missing = [k for k in keys if k not in archive.files]
        if missing:
            raise ValueError(f"{path} lacks {missing}; found {archive.files}.")
        return archive[keys[0]], archive[keys[1]]


def _as_unit_pixels(images, source):
    """Flatten images to (n, n_pixels) float32 in [0, 1], dividing 0..255 values by 255."""
    pixels = np.asarray(images).reshape(len(images), -1).astype(np.float32)
    low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 1.0)
    if low < 0 or high > 255:
        raise ValueError(
            f"{source}: pixel values must lie in [0, 1] or [0, 255], got [{low}, {high}]."
        )
    integer_valued = np.issubdtype(np.asarray(images).dtype, np.integer)
    return pixels / 255.0 if integer_valued or high > 1 else pixels


def load_mnist(path, *, subset="train", return_X_y=False):
    """Read MNIST from a local copy: ``mnist.npz`` or a directory of IDX files.

    Nothing is downloaded. Supported layouts:

    - an ``.npz`` file with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` (the
      Keras ``mnist.npz``);
    - a directory holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
      ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each optionally ``.gz``
      (the original files; ``train-images.idx3-ubyte`` spellings are accepted too).

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file or the directory of IDX files.
    subset : {"train", "test", "all"}, default="train"
        Which split to return; ``"all"`` concatenates train then test.
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of a :class:`~sklearn.utils.Bunch`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (float32, shape (n, rows * cols), values in [0, 1]), ``target`` (int64),
        ``image_shape`` and ``DESCR``.
    (X, y) : tuple of ndarray
        With ``return_X_y=True``.

    Raises
    ------
    FileNotFoundError
        If ``path`` or an IDX file it needs does not exist.
    ValueError
        If a file is malformed, an array is missing, or images and labels disagree.
    """
    path = Path(os.fspath(path))
    if not path.exists():
        raise FileNotFoundError(
            f"MNIST not found at {path}. Pass an mnist.npz file or a directory of IDX files."
        )
    if not (path.is_dir() or path.suffix == ".npz"):
        raise ValueError(f"{path} is neither an .npz file nor a directory of IDX files.")
    if subset not in ("train", "test", "all"):
        raise ValueError(f"subset must be 'train', 'test' or 'all', got {subset!r}.")

    X_parts, y_parts, image_shape = [], [], None
    for split in ("train", "test") if subset == "all" else (subset,):
        images, labels = _read_split(path, split)
        labels = np.asarray(labels)
        if images.ndim < 2 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{path} ({split}): images of shape {images.shape} do not match labels of "
                f"shape {labels.shape}."
            )
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{path} ({split}): labels must be integers, got {labels.dtype}.")
        image_shape = images.shape[1:]
        X_parts.append(_as_unit_pixels(images, f"{path} ({split})"))
        y_parts.append(labels.astype(np.int64))
    X, y = np.concatenate(X_parts), np.concatenate(y_parts)
    if return_X_y:
        return X, y
    return Bunch(data=X, target=y, image_shape=image_shape, DESCR=f"MNIST ({subset}) from {path}.")
