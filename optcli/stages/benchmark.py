"""The benchmark stage: latency of the baseline and every engine; gates from the values.

Timings are never cached: they belong to this machine at this moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optcli.backends import Engine
from optcli.bench import LatencyResult, measure
from optcli.calibration.synthetic import random_batch
from optcli.gates import BENCHMARK_METRICS, GateResult, engine_gates, evaluate
from optcli.specs import ShapeResolver
from optcli.stages.context import StageContext


@dataclass
class Benchmark:
    baseline: str
    results: list[LatencyResult]

    def report(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "results": [r.to_dict() for r in self.results]}


def benchmark_stage(ctx: StageContext, settings, engines: list[Engine], resolver: ShapeResolver) -> Benchmark:
    results = []
    with ctx.stage("benchmark") as record:
        total = len(engines) * len(settings.batch_sizes) * settings.iterations
        progress = ctx.ui.progress("benchmarking", total=total)
        try:
            for batch_size in settings.batch_sizes:
                feeds = random_batch(resolver, resolver.sizes(batch_size=batch_size), seed=7)
                baseline_p50 = None
                for engine in engines:
                    result = measure(
                        engine,
                        feeds,
                        batch_size,
                        warmup=settings.warmup,
                        iterations=settings.iterations,
                        time_budget_s=settings.time_budget_s,
                        on_step=lambda: progress.advance(1),
                    )
                    progress.advance(settings.iterations - result.iterations)
                    baseline_p50 = baseline_p50 or result.p50_ms
                    result.speedup = baseline_p50 / result.p50_ms
                    results.append(result)
        finally:
            progress.close()
        record.details = {"batch_sizes": settings.batch_sizes, "warmup": settings.warmup}
    return Benchmark(engines[0].label, results)


def benchmark_gates(
    shared: dict[str, str], own: dict[str, dict[str, str]], benchmark: Benchmark
) -> list[GateResult]:
    gates = []
    for result in benchmark.results:
        if result.engine == benchmark.baseline:
            continue
        values = {
            "speedup": result.speedup,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "throughput": result.throughput,
        }
        for metric, expr in engine_gates(shared, own.get(result.engine, {}), BENCHMARK_METRICS).items():
            gates.append(
                evaluate(
                    f"benchmark.{metric}",
                    result.engine,
                    values[metric],
                    expr,
                    f"batch size {result.batch_size}",
                )
            )
    return gates
