"""The benchmark stage: the baseline and every engine timed in interleaved rounds; gates decided on
95% intervals, with automatic re-measurement while a speed gate is inconclusive. With mode slo, each
one's throughput within a p99 budget instead (optcli.slo), on validation samples.

Timings are never cached: they belong to this machine at this moment. The raw timings go to
`<run>/timings.json`, from which every statistic in the report can be recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optcli import slo
from optcli.backends import Engine, create_engine
from optcli.benchmarking import LatencyResult, Schedule, Timings, analyze, measure_pass
from optcli.benchmarking.heap import steady_heap
from optcli.benchmarking.load import CpuCounters, MachineLoad, cpu_set, engine_threads, machine_load
from optcli.calibration.synthetic import random_batch
from optcli.gates import LATENCY_METRICS, GateResult, engine_gates, evaluate_interval
from optcli.specs import ShapeResolver
from optcli.stages.context import StageContext

TIMINGS_FILE = "timings.json"


@dataclass
class Benchmark:
    baseline: str
    method: str
    rounds: int
    remeasured: int
    results: list[LatencyResult]
    gates: list[GateResult]
    slo: dict[str, Any] | None = None  # mode slo: the budget, the search settings and each result
    mode: str = "latency"
    load: MachineLoad | None = None  # other processes' CPU use while measuring (None: not readable)
    heap: dict[str, Any] | None = None  # what benchmark.steady_heap set (None: off)

    @property
    def noisy(self) -> bool:
        """Some engine's timings spread beyond max_cv, or other processes contended for the CPUs."""
        return any(r.noisy for r in self.results) or bool(self.load and self.load.contended)

    def report(self) -> dict[str, Any]:
        if self.slo is not None:
            return {
                "baseline": self.baseline,
                "mode": "slo",
                "slo": self.slo,
                "noisy": False,
                "heap": self.heap,
                "results": [],
            }
        return {
            "baseline": self.baseline,
            "mode": self.mode,
            "method": self.method,
            "rounds": self.rounds,
            "remeasured": self.remeasured,
            "timings_file": TIMINGS_FILE,
            "noisy": self.noisy,
            "machine_load": self.load.to_dict() if self.load else None,
            "heap": self.heap,
            "results": [r.to_dict() for r in self.results],
        }


def benchmark_stage(
    ctx: StageContext,
    settings,
    engines: list[Engine],
    resolver: ShapeResolver,
    own_gates: dict[str, dict[str, str]],
    validation=None,
) -> Benchmark:
    """`engines[0]` is the baseline. `own_gates`: each engine's own gates, by label. `validation`:
    the validation DataStream, where mode slo takes its samples."""
    heap = steady_heap() if settings.steady_heap else None
    if settings.mode == "slo":
        result = slo_benchmark(ctx, settings, engines, resolver, own_gates, validation)
        result.heap = heap
        return result
    baseline = engines[0]
    schedule = Schedule(
        settings.rounds,
        settings.warmup,
        settings.iterations,
        settings.time_budget_s,
        settings.method,
        settings.min_time_s,
    )
    timings = Timings()
    feeds = {bs: random_batch(resolver, resolver.sizes(batch_size=bs), seed=7) for bs in settings.batch_sizes}
    cpus = cpu_set()
    with ctx.stage("benchmark") as record:
        before = CpuCounters.read(cpus)
        _measure(ctx, "benchmarking", {bs: engines for bs in settings.batch_sizes}, feeds, schedule, timings)
        results = analyze(timings, baseline.label, settings.max_cv)
        decided = benchmark_gates(settings, own_gates, results, baseline.label)
        remeasured = 0
        while remeasured < settings.remeasure and (todo := _inconclusive(decided)):
            cells = {bs: [baseline, *(e for e in engines if e.label in todo.get(bs, ()))] for bs in todo}
            _measure(
                ctx, f"re-measuring ({remeasured + 1}/{settings.remeasure})", cells, feeds, schedule, timings
            )
            remeasured += 1
            results = analyze(timings, baseline.label, settings.max_cv)
            decided = benchmark_gates(settings, own_gates, results, baseline.label, remeasured=remeasured)
        load = machine_load(before, CpuCounters.read(cpus), engine_threads(engines, len(cpus)))
        ctx.workspace.write_json(TIMINGS_FILE, timings.to_json())
        if load and (warning := load.warning()):
            ctx.warn(warning)
        noisy = [
            f"{r.engine} at batch {r.batch_size} (CV {r.cv:.2f}, p90/p50 {r.p90_over_p50:.2f})"
            for r in results
            if r.noisy
        ]
        if noisy:  # one line: a loaded machine makes every cell noisy at once
            ctx.warn(
                f"benchmark: noisy latency (CV above benchmark.max_cv {settings.max_cv:g}): "
                f"{'; '.join(noisy)}; the numbers may not hold on a rerun"
            )
        record.details = {
            "batch_sizes": settings.batch_sizes,
            "warmup": settings.warmup,
            "method": settings.method,
            "rounds": len(schedule.slices()),
            "remeasured": remeasured,
            "machine_load": load.to_dict() if load else None,
        }
    gates = [gate for _, gate in decided]
    rounds = len(schedule.slices())
    return Benchmark(
        baseline.label, settings.method, rounds, remeasured, results, gates, load=load, heap=heap
    )


def _measure(ctx, description, cells: dict[int, list[Engine]], feeds, schedule: Schedule, timings) -> None:
    total = sum(len(engines) for engines in cells.values()) * schedule.iterations
    progress = ctx.ui.progress(description, total=total)
    try:
        for bs, engines in cells.items():
            measure_pass(engines, feeds[bs], bs, schedule, timings, on_slice=progress.advance)
    finally:
        progress.close()


def _inconclusive(decided: list[tuple[int, GateResult]]) -> dict[int, set[str]]:
    """Batch size -> engines with an inconclusive speed gate there."""
    todo: dict[int, set[str]] = {}
    for batch_size, gate in decided:
        if gate.status == "inconclusive":
            todo.setdefault(batch_size, set()).add(gate.engine)
    return todo


def benchmark_gates(
    settings,
    own: dict[str, dict[str, str]],
    results: list[LatencyResult],
    baseline: str,
    *,
    remeasured: int = 0,
) -> list[tuple[int, GateResult]]:
    """Every engine's speed gates (shared benchmark.gates plus its own) with their batch size,
    decided on the 95% intervals."""
    decided = []
    passes = settings.inconclusive == "pass"
    for result in results:
        if result.engine == baseline:
            continue
        values, intervals = result.values(), result.intervals()
        for metric, expr in engine_gates(settings.gates, own.get(result.engine, {}), LATENCY_METRICS).items():
            gate = evaluate_interval(
                f"benchmark.{metric}",
                result.engine,
                values[metric],
                intervals[metric],
                expr,
                f"batch size {result.batch_size}, {result.rounds} rounds"
                + (", noisy" if result.noisy else ""),
                inconclusive_passes=passes,
            )
            if gate.status == "inconclusive" and remeasured:
                gate.detail += f"; still inconclusive after {remeasured} re-measurement(s)"
            decided.append((result.batch_size, gate))
    return decided


def slo_benchmark(ctx, settings, engines: list[Engine], resolver: ShapeResolver, own_gates, validation):
    """Mode slo: every engine's best batch/threads within the p99 budget, the baseline's first."""
    budget = settings.slo
    names = [spec.name for spec in resolver.inputs]
    with ctx.stage("benchmark") as record:
        if validation is not None:  # real samples: ids with the skew the data has
            pool = slo.sample_pool(validation.batches(samples=budget.max_batch), names, budget.max_batch)
        else:
            pool = random_batch(resolver, resolver.sizes(batch_size=budget.max_batch), seed=7)
        feeds = slo.feeds_of({name: pool[name] for name in names})
        progress = ctx.ui.progress(f"SLO search (p99 <= {budget.p99_ms:g} ms)", total=len(engines))
        results = []
        try:
            for engine in engines:
                results.append(_search(engine, feeds, budget))
                progress.advance(1)
        finally:
            progress.close()
        slo.with_speedups(results, engines[0].label)
        record.details = {"mode": "slo", "p99_ms": budget.p99_ms, "max_batch": budget.max_batch}
    data = {
        **budget.model_dump(mode="json"),
        "samples": len(pool[names[0]]),
        "data": validation.field if validation is not None else "synthetic",
        "results": [r.to_dict() for r in results],
    }
    gates = slo.slo_gates(settings.gates, results, engines[0].label, own_gates)
    return Benchmark(engines[0].label, "slo", 0, 0, [], gates, slo=data, mode="slo")


def _search(engine: Engine, feeds, budget) -> slo.SloResult:
    """One engine over the thread settings: an explicit count other than its own loads a copy with
    it (closed after); torch's thread count is process-wide, so it is put back."""
    import torch

    threaded = "threads" in type(engine.config).model_fields
    settings = budget if threaded else budget.model_copy(update={"threads": [None]})
    opened: list[Engine] = []
    saved = torch.get_num_threads()

    def engine_for(threads: int | None) -> Engine:
        while opened:
            opened.pop().close()
        if threads is None or threads == getattr(engine.config, "threads", None):
            torch.set_num_threads(saved)  # a torch copy before this one changed it
            return engine
        copy = engine.config.model_copy(update={"threads": threads})
        opened.append(create_engine(copy, engine.context).load())
        return opened[-1]

    try:
        return slo.search(engine.label, engine_for, feeds, settings)
    finally:
        while opened:
            opened.pop().close()
        torch.set_num_threads(saved)
