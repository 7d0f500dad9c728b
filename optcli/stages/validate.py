"""The validate stage: baseline and every engine on the same held-out batches; gates from the values.

Its result is cached by the engines' configs, their artifacts' digests, the PyTorch model and the
validation data's fingerprint; gates are evaluated afterwards, so a rerun that changes only a
threshold reads the metrics back and evaluates the new gates (and, with the benchmark off, builds
no engine at all).

With validate.stop_early an engine stops running once a gate it can no longer pass has failed
(a worst-sample or maximum metric, NaN/Inf outputs: gates.settling_gates). Its cached metrics then
cover only the first samples, so a rerun reuses them only while one of its settling gates still
fails on them (the verdict more samples could not change); a relaxed threshold validates anew.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from optcli.cache import make_key
from optcli.calibration import sample_digests
from optcli.gates import (
    VALIDATION_METRICS,
    GateResult,
    engine_gates,
    evaluate,
    settled_failure,
    settling_gates,
)
from optcli.ranking import BASELINE_KEYS
from optcli.stages.context import StageContext
from optcli.stages.data import DataStream, too_few_samples
from optcli.validate import EngineValidation, split_samples, validate_engines

BASELINE_METRICS = ("accuracy", *BASELINE_KEYS)


@dataclass
class Validation:
    results: list[EngineValidation]
    report: dict[str, Any]  # the report's `validation` section
    engines: list[dict[str, Any]]  # the engines' descriptions (from the build, or the cache)


def validation_key(
    ctx: StageContext, identity: dict[str, Any], data: DataStream, skip: int, class_output
) -> str:
    parts = {"engines": identity, "data": data.fingerprint(), "skip": skip, "class_output": class_output}
    return make_key("validate", {**parts, "versions": ctx.versions})


def validate_stage(
    ctx: StageContext,
    key: str,
    built: Callable[[], Any],
    data: DataStream,
    *,
    judged: int,
    skip: int,
    class_output: int | None,
    output_names: list[str],
    calibration_digests: set[bytes],
    stop_gates: list[dict[str, str]] | None = None,
) -> Validation:
    """Judge on `judged` samples after the first `skip` (those accuracy recovery tuned on).
    `stop_gates`: each candidate's settling gates (None: every engine sees every sample)."""
    entry = ctx.cache.get("validate", key)
    if entry is not None and not _still_settled(entry.meta["results"], stop_gates):
        entry = None
    engines_built = built() if entry is None else None  # the build is its own stage, before this one
    with ctx.stage("validate") as record:
        if entry is not None:
            meta = entry.meta
            results = [EngineValidation(**r) for r in meta["results"]]
            baseline_stats, counts = meta["baseline"], meta["counts"]
            engines = [_in_run(e, ctx.workspace.root) for e in meta["engines"]]
        else:
            results, baseline_stats, counts = _measure(
                ctx,
                engines_built.engines,
                data,
                judged,
                skip,
                class_output,
                output_names,
                calibration_digests,
                stop_gates,
            )
            engines = engines_built.descriptions
            meta = {"results": [asdict(r) for r in results], "baseline": baseline_stats, "counts": counts}
            portable = [_run_relative(e, ctx.workspace.root) for e in engines]
            ctx.cache.put("validate", key, {}, {**meta, "engines": portable})
        record.details = {
            "samples": baseline_stats["samples"],
            "overlap_with_calibration": counts["calibration"],
            "cached": entry is not None,
            "cache_key": key,
            "stopped_early": {r.engine: r.stopped_early for r in results if r.stopped_early},
        }
    if counts["calibration"]:
        ctx.warn(f"{counts['calibration']} validation samples were also used for calibration")
    if counts["tuning"]:
        ctx.warn(
            f"{counts['tuning']} held-out validation samples repeat samples accuracy recovery tuned on "
            "(validate.data holds duplicates)"
        )
    if data.synthetic:
        ctx.warn("validation used synthetic data: metrics compare engines, not task accuracy")
    labels = {e["label"]: e.get("precision_detail") for e in engines}
    report = {
        "data": data.options.model_dump(),
        "synthetic": data.synthetic,
        "samples": baseline_stats["samples"],
        "tuning_samples": {"first": 0, "count": skip},
        "held_out_samples": {"first": skip, "count": baseline_stats["samples"]},
        "overlap_with_calibration": counts["calibration"],
        "overlap_with_tuning": counts["tuning"],
        "baseline": baseline_stats,
        "engines": [
            {
                **r.to_dict(),
                "precision_detail": labels.get(r.engine) or r.precision,
                "baseline_metrics": {k: v for k, v in baseline_stats.items() if k in BASELINE_METRICS},
            }
            for r in results
        ],
    }
    return Validation(results, report, engines)


def stop_gates_of(settings, configs: list[Any]) -> list[dict[str, str]] | None:
    """Each candidate's gates that a failure settles (validate.stop_early), or None when off."""
    if not settings.stop_early:
        return None
    return [settling_gates(engine_gates(settings.gates, c.gates, VALIDATION_METRICS)) for c in configs]


def _still_settled(cached: list[dict[str, Any]], stop_gates: list[dict[str, str]] | None) -> bool:
    """Whether cached results that stopped early still decide today's verdict: each stopped engine
    fails one of today's settling gates on its partial metrics (with stopping off, none may stop)."""
    for index, result in enumerate(cached):
        if not result.get("stopped_early"):
            continue
        if stop_gates is None or settled_failure(result["summary"], stop_gates[index]) is None:
            return False
    return True


def _measure(
    ctx, engines, data: DataStream, judged, skip, class_output, output_names, calibration_digests, stop_gates
):
    progress = ctx.ui.progress("validating", total=judged)
    names = data.input_names
    counts = {"calibration": 0, "tuning": 0}
    # Accuracy recovery tuned on the first `skip` samples: the verdict is given on the ones after.
    tuning, rest = split_samples(data.batches(samples=skip + judged), skip)
    tuning_digests = {d for batch in tuning for d in sample_digests(batch, names)}

    def tracked() -> Iterator[dict]:
        for batch in rest:
            digests = sample_digests(batch, names)
            counts["calibration"] += sum(d in calibration_digests for d in digests)
            counts["tuning"] += sum(d in tuning_digests for d in digests)
            yield batch

    try:
        results, baseline_stats = validate_engines(
            engines[0],
            engines[1:],
            tracked(),
            output_names=output_names,
            labels_key=data.context.labels_key,
            class_output=class_output,
            on_batch=progress.advance,
            stop_gates=stop_gates,
        )
    finally:
        progress.close()
    if skip and baseline_stats["samples"] < judged:
        raise too_few_samples(skip + baseline_stats["samples"], skip, judged)
    return results, baseline_stats, counts


def validation_gates(shared: dict[str, str], own: dict[str, dict[str, str]], results: list[EngineValidation]):
    """Every engine's validate gates: the stage's, overridden per metric by the engine's own."""
    gates: list[GateResult] = []
    for result in results:
        problem = result.problem
        if problem:  # a gate even when the recipe set none: NaN/Inf outputs are never a pass
            gates.append(
                evaluate(
                    "validate.finite", result.engine, result.summary["non_finite"], "== 0", problem=problem
                )
            )
        stopped = result.stopped_early
        for metric, expr in engine_gates(shared, own.get(result.engine, {}), VALIDATION_METRICS).items():
            value = result.metric(metric)
            detail = "" if value is not None else "metric not available (no labels or no class output)"
            if stopped:
                detail = (
                    f"on the first {stopped['after_samples']} held-out samples: validation stopped once "
                    f"{stopped['gate']} could no longer pass" + (f"; {detail}" if detail else "")
                )
            gates.append(evaluate(f"validate.{metric}", result.engine, value, expr, detail, problem=problem))
    return gates


def _run_relative(description: dict[str, Any], root: Path) -> dict[str, Any]:
    """The cached copy of an engine's description: its artifact path relative to the run folder
    (the cache serves other run folders; report.json must name this run's file)."""
    try:
        return {**description, "path": str(Path(description["path"]).relative_to(root)), "path_in_run": True}
    except (KeyError, TypeError, ValueError):
        return description


def _in_run(description: dict[str, Any], root: Path) -> dict[str, Any]:
    if not description.get("path_in_run"):
        return description
    placed = {k: v for k, v in description.items() if k != "path_in_run"}
    return {**placed, "path": str(root / description["path"])}
