"""One engine at one batch size, as the report and the gates see it: percentiles, measured
throughput, spread, and the 95% intervals the speed gates are decided on."""

from __future__ import annotations

from dataclasses import dataclass

from optcli.benchmarking.measure import Cell, Timings
from optcli.benchmarking.stats import Interval, bootstrap, paired_speedup, seed_for, summarize


@dataclass
class LatencyResult:
    engine: str
    batch_size: int
    iterations: int
    rounds: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    throughput: float
    p50_ci: Interval
    p99_ci: Interval
    throughput_ci: Interval
    cv: float
    p90_over_p50: float
    round_medians_ms: list[float]
    noisy: bool
    speedup: float | None = None
    speedup_ci: Interval | None = None

    def intervals(self) -> dict[str, Interval | None]:
        """The interval each benchmark gate metric is decided on."""
        return {
            "speedup": self.speedup_ci,
            "p50_ms": self.p50_ci,
            "p99_ms": self.p99_ci,
            "throughput": self.throughput_ci,
        }

    def values(self) -> dict[str, float | None]:
        return {
            "speedup": self.speedup,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "throughput": self.throughput,
        }

    def to_dict(self) -> dict:
        return {
            "engine": self.engine,
            "batch_size": self.batch_size,
            "iterations": self.iterations,
            "rounds": self.rounds,
            "latency_ms": {
                "p50": self.p50_ms,
                "p90": self.p90_ms,
                "p99": self.p99_ms,
                "mean": self.mean_ms,
                "std": self.std_ms,
                "p50_ci": list(self.p50_ci),
            },
            "throughput": self.throughput,
            "throughput_ci": list(self.throughput_ci),
            "speedup": self.speedup,
            "speedup_ci": list(self.speedup_ci) if self.speedup_ci is not None else None,
            "spread": {
                "cv": self.cv,
                "p90_over_p50": self.p90_over_p50,
                "round_medians_ms": self.round_medians_ms,
            },
            "noisy": self.noisy,
        }


def analyze(timings: Timings, baseline: str, max_cv: float) -> list[LatencyResult]:
    """Results for every measured cell, in measurement order; the speedup is against the baseline
    at the same batch size."""
    return [
        _result(
            engine, batch_size, cell, timings.cells.get((baseline, batch_size)), engine == baseline, max_cv
        )
        for (engine, batch_size), cell in timings.cells.items()
    ]


def _result(
    engine: str, batch_size: int, cell: Cell, base: Cell | None, is_baseline: bool, max_cv: float
) -> LatencyResult:
    summary = summarize(cell.rounds)
    paired = None if is_baseline or base is None else base.rounds
    ci = bootstrap(cell.rounds, paired, seed_for(engine, batch_size))
    # Measured throughput: samples over the wall time of the timed windows. Its interval scales the
    # mean latency's interval by the same ratio (the windows' per-run overhead is measured, not drawn).
    samples = batch_size * cell.runs
    throughput = samples / cell.window_s if cell.window_s > 0 else float("nan")
    per_run_s = cell.window_s / cell.runs if cell.runs else float("nan")
    overhead = per_run_s / (summary.mean / 1000.0) if summary.mean > 0 else 1.0
    throughput_ci = (
        batch_size * 1000.0 / (ci.mean[1] * overhead),
        batch_size * 1000.0 / (ci.mean[0] * overhead),
    )
    if is_baseline:
        speedup, speedup_ci = 1.0, (1.0, 1.0)
    elif base is not None:
        speedup, speedup_ci = paired_speedup(base.rounds, cell.rounds), ci.speedup
    else:
        speedup, speedup_ci = None, None
    return LatencyResult(
        engine=engine,
        batch_size=batch_size,
        iterations=cell.runs,
        rounds=len(cell.rounds),
        p50_ms=summary.p50,
        p90_ms=summary.p90,
        p99_ms=summary.p99,
        mean_ms=summary.mean,
        std_ms=summary.std,
        throughput=throughput,
        p50_ci=ci.p50,
        p99_ci=ci.p99,
        throughput_ci=throughput_ci,
        cv=summary.cv,
        p90_over_p50=summary.p90_over_p50,
        round_medians_ms=summary.round_medians,
        noisy=summary.cv > max_cv,
        speedup=speedup,
        speedup_ci=speedup_ci,
    )
