"""Latency of one engine at one batch size: warm-up, then timed runs (perf_counter), percentiles."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optcli.backends import Engine
from optcli.calibration import Batch


@dataclass
class LatencyResult:
    engine: str
    batch_size: int
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    throughput: float
    speedup: float | None = None

    def to_dict(self) -> dict:
        return {
            "engine": self.engine,
            "batch_size": self.batch_size,
            "iterations": self.iterations,
            "latency_ms": {
                "p50": self.p50_ms,
                "p90": self.p90_ms,
                "p99": self.p99_ms,
                "mean": self.mean_ms,
                "std": self.std_ms,
            },
            "throughput": self.throughput,
            "speedup": self.speedup,
        }


def measure(
    engine: Engine,
    feeds: Batch,
    batch_size: int,
    *,
    warmup: int,
    iterations: int,
    time_budget_s: float | None,
    on_step: Callable[[], None] | None = None,
) -> LatencyResult:
    bound = engine.bind(feeds)
    for _ in range(warmup):
        engine.run_bound(bound)
    engine.synchronize()
    timings: list[float] = []
    deadline = time.perf_counter() + time_budget_s if time_budget_s else None
    for _ in range(iterations):
        start = time.perf_counter()
        engine.run_bound(bound)
        engine.synchronize()  # device engines: the work must be done before the clock is read
        timings.append(time.perf_counter() - start)
        if on_step:
            on_step()
        if deadline and len(timings) >= 5 and time.perf_counter() > deadline:
            break
    ms = np.array(timings) * 1000.0
    p50 = float(np.percentile(ms, 50))
    return LatencyResult(
        engine=engine.label,
        batch_size=batch_size,
        iterations=len(ms),
        p50_ms=p50,
        p90_ms=float(np.percentile(ms, 90)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
        std_ms=float(ms.std()),
        throughput=batch_size / (p50 / 1000.0),
    )
