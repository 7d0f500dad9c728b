"""Digits example: a small CNN trained on scikit-learn's 8x8 handwritten digits.

Weights and data are committed in this package, so scikit-learn is not needed at runtime.
"""

from optcli.examples.digits.data import DATA_PATH, calibration_batches, validation_batches
from optcli.examples.digits.model import WEIGHTS_PATH, DigitsCNN, load_model

__all__ = [
    "DATA_PATH",
    "WEIGHTS_PATH",
    "DigitsCNN",
    "calibration_batches",
    "load_model",
    "validation_batches",
]
