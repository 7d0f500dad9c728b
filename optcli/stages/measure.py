"""Validation (held-out accuracy vs the baseline) and benchmark (latency vs the baseline) stages."""

from __future__ import annotations

from collections.abc import Iterator

from optcli.backends import Engine
from optcli.bench import measure
from optcli.calibration import SourceContext, is_synthetic, sample_digests, stream
from optcli.calibration.synthetic import random_batch
from optcli.gates import BENCHMARK_METRICS, VALIDATION_METRICS, evaluate
from optcli.stages.context import Run
from optcli.stages.recover import too_few_samples, tuning_samples
from optcli.validate import split_samples, validate_engines


def validate_stage(run: Run, engines: list[Engine]) -> None:
    settings = run.recipe.validate_
    if not settings.enabled:
        return
    baseline, candidates = engines[0], engines[1:]
    ctx = SourceContext(run.resolver, run.recipe.base_dir, "validate.data", labels_key=settings.labels)
    names = [s.name for s in run.recipe.model.inputs]
    skip = tuning_samples(run)
    overlap = tuning_overlap = 0
    with run.stage("validate") as record:
        progress = run.ui.progress("validating", total=settings.samples)
        # Accuracy recovery tuned on the first `skip` samples: the verdict is given on the ones after.
        tuning, rest = split_samples(
            stream(settings.data, ctx, batch_size=settings.batch_size, samples=skip + settings.samples), skip
        )
        tuning_digests = {d for batch in tuning for d in sample_digests(batch, names)}

        def tracked() -> Iterator[dict]:
            nonlocal overlap, tuning_overlap
            for batch in rest:
                digests = sample_digests(batch, names)
                overlap += sum(d in run.calibration_digests for d in digests)
                tuning_overlap += sum(d in tuning_digests for d in digests)
                yield batch

        try:
            results, baseline_stats = validate_engines(
                baseline,
                candidates,
                tracked(),
                output_names=run.output_names,
                labels_key=settings.labels,
                class_output=settings.class_output,
                on_batch=progress.advance,
            )
        finally:
            progress.close()
        judged = baseline_stats["samples"]
        if skip and judged < settings.samples:
            raise too_few_samples(skip + judged, skip, settings.samples)
        record.details = {"samples": judged, "overlap_with_calibration": overlap}
    if overlap:
        run.report.warnings.append(f"{overlap} validation samples were also used for calibration")
    if tuning_overlap:
        run.report.warnings.append(
            f"{tuning_overlap} held-out validation samples repeat samples accuracy recovery tuned on "
            "(validate.data holds duplicates)"
        )
    synthetic = is_synthetic(settings.data)
    if synthetic:
        run.report.warnings.append(
            "validation used synthetic data: metrics compare engines, not task accuracy"
        )
    labels = {e["label"]: e.get("precision_detail") for e in run.report.engines}
    run.report.validation = {
        "data": settings.data.model_dump(),
        "synthetic": synthetic,
        "samples": judged,
        "tuning_samples": {"first": 0, "count": skip},
        "held_out_samples": {"first": skip, "count": judged},
        "overlap_with_calibration": overlap,
        "overlap_with_tuning": tuning_overlap,
        "baseline": baseline_stats,
        "engines": [
            {
                **r.to_dict(),
                "precision_detail": labels.get(r.engine) or r.precision,
                "baseline_metrics": {k: v for k, v in baseline_stats.items() if k == "accuracy"},
            }
            for r in results
        ],
    }
    configs = {e.label: e.config for e in engines}
    for result in results:
        problem = result.problem
        if problem:  # a gate even when the recipe set none: NaN/Inf outputs are never a pass
            run.report.gates.append(
                evaluate(
                    "validate.finite", result.engine, result.summary["non_finite"], "== 0", problem=problem
                )
            )
        for metric, expr in engine_gates(settings.gates, configs[result.engine], VALIDATION_METRICS).items():
            value = result.metric(metric)
            detail = "" if value is not None else "metric not available (no labels or no class output)"
            run.report.gates.append(
                evaluate(f"validate.{metric}", result.engine, value, expr, detail, problem=problem)
            )


def engine_gates(shared: dict[str, str], config, family: dict[str, str]) -> dict[str, str]:
    """The stage's gates, overridden or extended by the engine's own `gates` of the same family."""
    own = {metric: expr for metric, expr in config.gates.items() if metric in family}
    return {**shared, **own}


def benchmark_stage(run: Run, engines: list[Engine]) -> None:
    settings = run.recipe.benchmark
    if not settings.enabled:
        return
    results = []
    with run.stage("benchmark") as record:
        total = len(engines) * len(settings.batch_sizes) * settings.iterations
        progress = run.ui.progress("benchmarking", total=total)
        try:
            for batch_size in settings.batch_sizes:
                feeds = random_batch(run.resolver, run.resolver.sizes(batch_size=batch_size), seed=7)
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
    run.report.benchmark = {"baseline": engines[0].label, "results": [r.to_dict() for r in results]}
    configs = {e.label: e.config for e in engines}
    for result in results:
        if result.engine == engines[0].label:
            continue
        values = {
            "speedup": result.speedup,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "throughput": result.throughput,
        }
        for metric, expr in engine_gates(settings.gates, configs[result.engine], BENCHMARK_METRICS).items():
            run.report.gates.append(
                evaluate(
                    f"benchmark.{metric}",
                    result.engine,
                    values[metric],
                    expr,
                    f"batch size {result.batch_size}",
                )
            )
