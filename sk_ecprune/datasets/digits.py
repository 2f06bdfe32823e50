"""Digits in MNIST's layout (28x28), from scikit-learn's bundled 8x8 digits.

For the paper's 784-input classification networks on a machine without internet.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.datasets import load_digits
from sklearn.utils import Bunch

__all__ = ["load_digits_28x28"]


def load_digits_28x28(*, n_class=10, return_X_y=False):
    """Load scikit-learn's 8x8 digits as MNIST-shaped 28x28 images in [0, 1].

    Each 8x8 image of :func:`sklearn.datasets.load_digits` is upsampled to 20x20 by bilinear
    interpolation (:func:`scipy.ndimage.zoom`, ``order=1``) and centred in a 28x28 frame with
    a 4-pixel zero border, the layout of MNIST (digits in a 20x20 box inside 28x28 images).
    Pixel values 0..16 are divided by 16. Deterministic, and needs no download.

    Parameters
    ----------
    n_class : int, default=10
        Number of classes to return, as in :func:`~sklearn.datasets.load_digits`.
    return_X_y : bool, default=False
        Return ``(X, y)`` instead of a :class:`~sklearn.utils.Bunch`.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (float32, shape (n, 784)), ``target`` (int, shape (n,)), ``images``
        (float32, shape (n, 28, 28)), ``target_names`` and ``DESCR``.
    (X, y) : tuple of ndarray
        With ``return_X_y=True``.
    """
    digits = load_digits(n_class=n_class)
    # order=1 cannot overshoot, so the values stay in [0, 16] and the scaled ones in [0, 1].
    zoomed = ndimage.zoom(digits.images, (1.0, 2.5, 2.5), order=1)
    images = np.pad(zoomed / 16.0, ((0, 0), (4, 4), (4, 4))).astype(np.float32)
    X = images.reshape(len(images), -1)
    y = digits.target
    if return_X_y:
        return X, y
    return Bunch(
        data=X,
        target=y,
        images=images,
        target_names=digits.target_names,
        DESCR="scikit-learn digits upsampled 8x8 -> 20x20 (bilinear), zero-padded to 28x28.",
    )
