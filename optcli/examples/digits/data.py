"""Committed calibration and held-out validation data for the digits example.

The arrays in ``digits.npz`` were produced by ``scripts/train_digits.py`` from
scikit-learn's ``load_digits`` dataset; scikit-learn is not needed at runtime.
Images are float32 ``[N, 1, 8, 8]`` scaled to ``[0, 1]``; labels are int64 ``[N]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

DATA_PATH: Path = Path(__file__).with_name("digits.npz")
"""Path of the committed ``.npz`` file (keys ``calib_x``, ``val_x``, ``val_y``)."""


def _load_arrays(*keys: str) -> tuple[np.ndarray, ...]:
    """Load the given arrays from :data:`DATA_PATH`."""
    with np.load(DATA_PATH) as data:
        return tuple(np.asarray(data[key]) for key in keys)


def _check_batch_size(batch_size: int) -> None:
    """Raise ``ValueError`` unless ``batch_size`` is a positive integer."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")


def _calibration_gen(batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Load the calibration data lazily and yield its batches."""
    (calib_x,) = _load_arrays("calib_x")
    for i in range(0, len(calib_x), batch_size):
        yield {"x": calib_x[i : i + batch_size]}


def _validation_gen(batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Load the validation data lazily and yield its batches."""
    val_x, val_y = _load_arrays("val_x", "val_y")
    for i in range(0, len(val_x), batch_size):
        yield {"x": val_x[i : i + batch_size], "labels": val_y[i : i + batch_size]}


def calibration_batches(batch_size: int = 32) -> Iterator[dict[str, np.ndarray]]:
    """Yield calibration batches ``{"x": float32 [b, 1, 8, 8]}`` (256 samples in total)."""
    _check_batch_size(batch_size)
    return _calibration_gen(batch_size)


def validation_batches(batch_size: int = 64) -> Iterator[dict[str, np.ndarray]]:
    """Yield held-out batches ``{"x": float32 [b, 1, 8, 8], "labels": int64 [b]}``."""
    _check_batch_size(batch_size)
    return _validation_gen(batch_size)
