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
    """Each engine's fastest slice median, in ms per call, by label.

    Not the median of all calls: on a shared machine, load comes in bursts that double every call
    for a slice or two, and with 5 short slices such a burst can move an engine's median by 2x.
    On a 2-core AMX Xeon (ResNet-50, 1 thread), a target run's probe gave ov-mixed 18.7 ms, and its
    benchmark then gave 9.5 ms p50. Probing by hand, one slice of each engine was 1.3-2x slower
    than the rest. The fastest slice is the one least touched by other load, and load only ever
    adds time."""
    timings = Timings()
    measure_pass(engines, feeds, batch_size, PROBE, timings)
    fastest = {}
    for engine in engines:
        rounds = timings.cell(engine.label, batch_size).rounds
        fastest[engine.label] = round(min(statistics.median(slice_) for slice_ in rounds), 4)
    return fastest
