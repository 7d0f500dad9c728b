"""Recommender example: a DLRM-style CTR model over seeded embedding tables and a synthetic click log.

`optcli.examples.recsys:load_model` (kwargs `variant_name: full | small`), `calibration_batches`
and `validation_batches` (same kwarg) are what recipes/recsys.yaml names.
"""

from optcli.examples.recsys.data import calibration_batches, click_log, validation_batches
from optcli.examples.recsys.model import DLRM, FULL, SMALL, WEIGHTS_PATH, load_model, teacher

__all__ = [
    "DLRM",
    "FULL",
    "SMALL",
    "WEIGHTS_PATH",
    "calibration_batches",
    "click_log",
    "load_model",
    "teacher",
    "validation_batches",
]
