"""Calibration with a statistics cache: collect once per (model, data), derive any method's ranges."""

from __future__ import annotations

import hashlib
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optcli.calibration import Batch
from optcli.errors import UserInputError
from optcli.quantization.ranges import compute_ranges
from optcli.quantization.statistics import ActivationStatistics, collect, float_activations

STATISTICS_FORMAT = 2  # in the key: files of an older layout (no NaN/Inf counts) are never read


@dataclass(frozen=True)
class CalibrationCache:
    """Where statistics are kept, and a fingerprint of the calibration data configuration."""

    directory: Path | None
    data_key: str


@dataclass
class Calibration:
    ranges: dict[str, tuple[float, float]]
    first_batch: dict[str, np.ndarray]
    details: dict[str, Any]


def calibration_key(model_path: Path, data_key: str) -> str:
    """Key of cached statistics: the model's bytes (external data included) and the data's fingerprint."""
    from optcli.artifacts import files_digest, onnx_files

    text = f"{STATISTICS_FORMAT}:{files_digest(onnx_files(model_path))}:{data_key}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def calibrate(
    model_path: Path,
    batches: Iterator[Batch],
    input_names: list[str],
    *,
    method: str,
    percentile: float,
    symmetric: bool,
    cache: CalibrationCache | None,
) -> Calibration:
    """Ranges for every float activation of `model_path`, from cached statistics when they match."""
    key = calibration_key(model_path, cache.data_key if cache else "")
    path = cache.directory / f"calibration-stats-{key}.npz" if cache and cache.directory else None
    first: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    stats = _cached(path)
    if stats is not None:
        batch = next(batches, None)  # one batch still feeds ORT's own (overridden) calibration pass
        first = {n: batch[n] for n in input_names} if batch else {}
        reused = True
    else:

        def remember(batch: Batch) -> None:
            if not first:
                first.update({n: batch[n] for n in input_names})

        stats = collect(model_path, float_activations(model_path), batches, remember)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            stats.save(path)
        reused = False
    collected = time.perf_counter()
    refuse_non_finite(stats)
    ranges = compute_ranges(stats, method, percentile=percentile, symmetric=symmetric)
    return Calibration(
        ranges,
        first,
        {
            "statistics": str(path) if path else None,
            "statistics_reused": reused,
            "statistics_seconds": round(collected - start, 3),
            "ranges_seconds": round(time.perf_counter() - collected, 3),
            "calibrated_tensors": len(ranges),
            "calibration_samples": stats.samples,
            "calibration_batches": stats.batches,
            "non_finite_activations": {n: h.non_finite for n, h in stats.tensors.items() if h.non_finite},
        },
    )


def _cached(path: Path | None) -> ActivationStatistics | None:
    """Statistics from the cache; an unreadable file (cut short, edited) is a miss, not a failure."""
    if path is None or not path.exists():
        return None
    try:
        return ActivationStatistics.load(path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
        return None


def refuse_non_finite(stats: ActivationStatistics) -> None:
    """A tensor that was NaN/Inf for every calibration sample has no range: say so (exit 2) instead of
    letting the quantizer fail on a NaN scale."""
    dead = [name for name, hist in stats.tensors.items() if hist.only_non_finite]
    if not dead:
        return
    shown = ", ".join(f"'{n}'" for n in dead[:3]) + (f" and {len(dead) - 3} more" if len(dead) > 3 else "")
    raise UserInputError(
        f"quantization.calibration.data: on these {stats.samples} samples the model computes only NaN/Inf "
        f"in {len(dead)} of {len(stats.tensors)} calibrated tensors ({shown}), so they have no "
        "quantization range",
        hint="run the PyTorch model on a calibration batch and find where NaN appears (log or sqrt of "
        "negatives, a division by zero, a fully masked softmax), or fix the data that causes it",
    )
