"""Raw timings: engines at one batch size, warm-up, then timed runs (perf_counter) in rounds.

`interleaved` (the default) goes round robin: each round times a slice of every engine's runs, so
background load that comes and goes hits all engines alike instead of whichever ran at the time.
`sequential` times each engine's rounds back to back (the method before rounds existed); it is
kept to show the difference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from optcli import interrupts
from optcli.backends import Engine
from optcli.benchmarking.load import cpu_set, engine_threads
from optcli.calibration import Batch

Method = Literal["interleaved", "sequential"]
MIN_RUNS = 5  # per engine and batch size, even when the time budget is spent
REWARM_RUNS = 2  # untimed runs before each slice: another engine just evicted the caches...
# ...but no more than this many ms of them: a 100 ms call refills the caches in its first
# milliseconds, and two untimed ResNet-50 calls before each of 20 slices doubled its benchmark.
REWARM_MS = 20.0
# ...except where engines run several threads: ONNX Runtime's idle workers spin after a call, and
# the next engine's first call shares the cores with them. On this project's 2-core AVX2 EPYC at 2
# threads (ResNet-50, slices of 2 calls, ORT FP32 / ORT INT8 / OpenVINO INT8 in turn), the timed
# p50 was 83.5 ms for ORT INT8 and 54.1 ms for OpenVINO INT8 without an untimed call before each
# slice, 57.8 and 39.1 ms with one, and 58.2 and 41.8 ms run alone. So with more than one thread,
# every slice starts with at least one untimed call.
SPIN_REWARM_RUNS = 1


@dataclass
class Cell:
    """One engine at one batch size: timed runs in ms, per round, and the timed windows' wall time."""

    rounds: list[list[float]] = field(default_factory=list)
    window_s: float = 0.0

    @property
    def runs(self) -> int:
        return sum(len(r) for r in self.rounds)


class Timings:
    """Every cell measured in a run; `to_json` is what `<run>/timings.json` holds."""

    def __init__(self) -> None:
        self.cells: dict[tuple[str, int], Cell] = {}

    def cell(self, engine: str, batch_size: int) -> Cell:
        return self.cells.setdefault((engine, batch_size), Cell())

    def to_json(self) -> dict[str, dict[str, list[list[float]]]]:
        data: dict[str, dict[str, list[list[float]]]] = {}
        for (engine, batch_size), cell in self.cells.items():
            data.setdefault(engine, {})[str(batch_size)] = [list(r) for r in cell.rounds]
        return data


@dataclass(frozen=True)
class Schedule:
    """How one measurement pass times each engine (iterations and time budget are per pass)."""

    rounds: int
    warmup: int
    iterations: int
    time_budget_s: float | None
    method: Method = "interleaved"
    min_time_s: float | None = None  # time each engine at least this long per pass (fast calls)

    def slices(self) -> list[int]:
        """Timed runs per round: `iterations` split as evenly as possible (at least one each)."""
        rounds = max(1, min(self.rounds, self.iterations))
        share, extra = divmod(self.iterations, rounds)
        return [share + (1 if i < extra else 0) for i in range(rounds)]


def measure_pass(
    engines: list[Engine],
    feeds: Batch,
    batch_size: int,
    schedule: Schedule,
    timings: Timings,
    on_slice: Callable[[int], None] | None = None,
) -> None:
    """Time every engine once more for `schedule` at this batch size, appending rounds to `timings`."""
    bound = {engine.label: engine.bind(feeds) for engine in engines}
    least_rewarm = SPIN_REWARM_RUNS if len(engines) > 1 and engine_threads(engines, len(cpu_set())) > 1 else 0
    rewarm = {}
    for engine in engines:
        start = time.perf_counter()
        _runs(engine, bound[engine.label], schedule.warmup)
        per_call_ms = (time.perf_counter() - start) * 1000.0 / max(1, schedule.warmup)
        rewarm[engine.label] = max(least_rewarm, rewarm_runs(min(schedule.warmup, REWARM_RUNS), per_call_ms))
    slices = schedule.slices()
    budget = schedule.time_budget_s / len(slices) if schedule.time_budget_s else None
    floor = schedule.min_time_s / len(slices) if schedule.min_time_s else None
    least = math.ceil(MIN_RUNS / len(slices))
    if schedule.method == "interleaved":
        order = [(engine, n) for n in slices for engine in engines]
    else:
        order = [(engine, n) for engine in engines for n in slices]
    for engine, n in order:
        _runs(engine, bound[engine.label], rewarm[engine.label])
        cell = timings.cell(engine.label, batch_size)
        times, window = _timed_slice(engine, bound[engine.label], n, budget, least, floor)
        cell.rounds.append(times)
        cell.window_s += window
        if on_slice:
            on_slice(n)
        interrupts.check()


def rewarm_runs(most: int, per_call_ms: float) -> int:
    """Untimed runs before a slice: up to `most`, as many as fit in REWARM_MS."""
    if per_call_ms <= 0:
        return most
    return max(0, min(most, int(REWARM_MS // per_call_ms)))


def _runs(engine: Engine, bound: Any, count: int) -> None:
    for _ in range(count):
        engine.run_bound(bound)
    engine.synchronize()


def _timed_slice(
    engine: Engine, bound: Any, count: int, budget_s: float | None, least: int, floor_s: float | None = None
) -> tuple[list[float], float]:
    """`count` timed runs (fewer, but at least `least`, once `budget_s` is spent; more, while the
    slice is shorter than `floor_s`): each run's ms, and the wall seconds from the first start to
    the last end (for measured throughput)."""
    times: list[float] = []
    window_start = time.perf_counter()
    deadline = window_start + budget_s if budget_s else None
    until = window_start + floor_s if floor_s else None
    while True:
        start = time.perf_counter()
        engine.run_bound(bound)
        engine.synchronize()  # device engines: the work must be done before the clock is read
        end = time.perf_counter()
        times.append((end - start) * 1000.0)
        if deadline and len(times) >= least and end > deadline:
            break
        if len(times) >= count and (until is None or end >= until):
            break
    return times, time.perf_counter() - window_start
