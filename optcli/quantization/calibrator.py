"""Calibration with a statistics cache: collect once per (model, data), derive any method's ranges."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optcli.calibration import Batch
from optcli.environment import file_digest
from optcli.quantization.ranges import compute_ranges
from optcli.quantization.statistics import ActivationStatistics, collect, float_activations


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
    key = hashlib.sha256(f"{file_digest(model_path)}:{cache.data_key if cache else ''}".encode()).hexdigest()[
        :16
    ]
    path = cache.directory / f"calibration-stats-{key}.npz" if cache and cache.directory else None
    first: dict[str, np.ndarray] = {}
    start = time.perf_counter()
    if path is not None and path.exists():
        stats = ActivationStatistics.load(path)
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
        },
    )
