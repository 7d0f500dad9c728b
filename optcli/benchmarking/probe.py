"""A short latency probe: a few interleaved runs per engine, for ordering candidates, never for a
gate or a reported figure (the benchmark stage measures those)."""

from __future__ import annotations

import statistics

from optcli.backends import Engine
from optcli.benchmarking.measure import Schedule, Timings, measure_pass
from optcli.calibration import Batch

# 5 interleaved slices of at least 20 ms each (one run, for calls longer than that), after 2
# untimed runs: about 7 calls for ResNet-50, enough to tell apart engines 1.5x apart. With engines on
# several threads each slice also starts with an untimed call (measure.SPIN_REWARM_RUNS).
PROBE = Schedule(rounds=5, warmup=2, iterations=5, time_budget_s=None, min_time_s=0.1)


def probe_latency(engines: list[Engine], feeds: Batch, batch_size: int) -> dict[str, float]:
    """Median ms per call of each engine on `feeds`, by label."""
    timings = Timings()
    measure_pass(engines, feeds, batch_size, PROBE, timings)
    medians = {}
    for engine in engines:
        runs = [t for slice_ in timings.cell(engine.label, batch_size).rounds for t in slice_]
        medians[engine.label] = round(statistics.median(runs), 4)
    return medians
