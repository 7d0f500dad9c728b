"""The validate stage: baseline and every engine on the same held-out batches; gates from the values.

Its result is cached by the engines' configs, their artifacts' digests, the PyTorch model and the
validation data's fingerprint; gates are evaluated afterwards, so a rerun that changes only a
threshold reads the metrics back and evaluates the new gates (and, with the benchmark off, builds
no engine at all).

With validate.stop_early an engine stops running once a gate it can no longer pass has failed
(a worst-sample or maximum metric, NaN/Inf outputs: gates.settling_gates). Its cached metrics then
cover only the first samples, so a rerun reuses them only while one of its settling gates still
fails on them (the verdict more samples could not change); a relaxed threshold validates anew.

In a target run, validate.prune_ratio validates the candidates fastest first, after a short latency
probe, and leaves out those that can no longer be chosen (optcli.fastest_first). The baseline's
outputs are kept in memory between the tiers, so it runs once. A cached entry with pruned
candidates is reused only while the candidate that pruned them still passes today's gates, at a
ratio no wider than the one that pruned them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from optcli.backends import Engine
from optcli.cache import make_key
from optcli.calibration import sample_digests
from optcli.fastest_first import validate_fastest_first
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
from optcli.validate import EngineValidation, RecordingBaseline, split_samples, validate_engines

BASELINE_METRICS = ("accuracy", *BASELINE_KEYS)
# The baseline's held-out batches and outputs kept for the later tiers of a pruned validation; past
# this the later tiers run it again (the verdicts are the same, only slower).
REPLAY_CAP_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Judging:
    """How the validate stage judges candidates while it runs, before the pipeline's gates do."""

    gates: list[dict[str, str]]  # each candidate's validate gates (the stage's, overridden by its own)
    stop_early: bool = True
    prune_ratio: float | None = None  # a target run's pruning (optcli.fastest_first); None: off
    probe: Callable[[list[Engine]], dict[str, float]] | None = None  # ms per candidate label

    def stop_gates(self) -> list[dict[str, str]] | None:
        return [settling_gates(g) for g in self.gates] if self.stop_early else None

    def passes(self, index: int, result: EngineValidation) -> bool:
        """Whether candidate `index`'s result passes all its validate gates."""
        if result.problem or result.stopped_early or result.pruned:
            return False
        return all(
            evaluate(f"validate.{metric}", result.engine, result.metric(metric), expr).passed
            for metric, expr in self.gates[index].items()
        )


def judging_of(settings, configs: list[Any], probe=None) -> Judging:
    """The validate section's judging of these candidates; `probe` (a target run with a latency
    benchmark) turns on validate.prune_ratio."""
    return Judging(
        gates=[engine_gates(settings.gates, c.gates, VALIDATION_METRICS) for c in configs],
        stop_early=settings.stop_early,
        prune_ratio=settings.prune_ratio if probe is not None else None,
        probe=probe if settings.prune_ratio is not None else None,
    )


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
    judging: Judging | None = None,
) -> Validation:
    """Judge on `judged` samples after the first `skip` (those accuracy recovery tuned on).
    `judging`: stopping and pruning (None: every engine sees every sample)."""
    entry = ctx.cache.get("validate", key)
    if entry is not None and not _still_valid(entry.meta["results"], judging):
        entry = None
    engines_built = built() if entry is None else None  # the build is its own stage, before this one
    with ctx.stage("validate") as record:
        if entry is not None:
            meta = entry.meta
            results = [EngineValidation(**r) for r in meta["results"]]
            baseline_stats, counts = meta["baseline"], meta["counts"]
            engines = [_in_run(e, ctx.workspace.root) for e in meta["engines"]]
        else:
            results, baseline_stats, counts, probe_ms = _measure(
                ctx,
                engines_built.engines,
                data,
                judged,
                skip,
                class_output,
                output_names,
                calibration_digests,
                judging,
            )
            engines = engines_built.descriptions
            meta = {
                "results": [asdict(r) for r in results],
                "baseline": baseline_stats,
                "counts": counts,
                "probe_ms": probe_ms,
            }
            portable = [_run_relative(e, ctx.workspace.root) for e in engines]
            ctx.cache.put("validate", key, {}, {**meta, "engines": portable})
        record.details = {
            "samples": baseline_stats["samples"],
            "overlap_with_calibration": counts["calibration"],
            "cached": entry is not None,
            "cache_key": key,
            "stopped_early": {r.engine: r.stopped_early for r in results if r.stopped_early},
            "probe_ms": meta.get("probe_ms"),
            "pruned": {r.engine: r.pruned for r in results if r.pruned},
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
        "probe_ms": meta.get("probe_ms"),
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


def _still_valid(cached: list[dict[str, Any]], judging: Judging | None) -> bool:
    """Whether cached results that stopped early or pruned still give today's verdicts. A stopped
    engine must fail one of today's settling gates on its partial metrics; a pruned one needs
    pruning on, at a ratio no wider than the one that pruned it, and the engine that pruned it
    passing today's gates."""
    stop = judging.stop_gates() if judging is not None else None
    labels = [r["engine"] for r in cached]
    for index, result in enumerate(cached):
        stopped = result.get("stopped_early")
        if stopped and (stop is None or settled_failure(result["summary"], stop[index]) is None):
            return False
        pruned = result.get("pruned")
        if pruned:
            if judging is None or judging.prune_ratio is None or pruned["ratio"] < judging.prune_ratio:
                return False
            if pruned["by"] not in labels:
                return False
            by = labels.index(pruned["by"])
            if not judging.passes(by, EngineValidation(**cached[by])):
                return False
    return True


def _measure(
    ctx, engines, data: DataStream, judged, skip, class_output, output_names, calibration_digests, judging
):
    """Every candidate's results in plan order, the baseline's stats, the overlap counts, and the
    latency probe (None without pruning)."""
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

    baseline = RecordingBaseline(engines[0], REPLAY_CAP_BYTES)
    candidates: list[Engine] = engines[1:]
    index = {e.label: i for i, e in enumerate(candidates)}
    stop = judging.stop_gates() if judging is not None else None
    results: dict[str, EngineValidation] = {}
    first_stats: list[dict[str, Any]] = []  # the baseline's stats, from the first pass over the data

    def validate(labels: list[str]) -> set[str]:
        if not first_stats:
            batches: Any = tracked()
        elif baseline.complete:
            batches = baseline.batches
        else:  # too large to keep: the held-out samples again, and the baseline on them
            batches = split_samples(data.batches(samples=skip + judged), skip)[1]
        tier = [e for e in candidates if e.label in labels]
        title = "validating" if len(tier) == len(candidates) else f"validating {', '.join(labels)}"
        progress = ctx.ui.progress(title, total=judged)
        try:
            done, baseline_stats = validate_engines(
                baseline,
                tier,
                batches,
                output_names=output_names,
                labels_key=data.context.labels_key,
                class_output=class_output,
                on_batch=progress.advance,
                stop_gates=None if stop is None else [stop[index[e.label]] for e in tier],
            )
        finally:
            progress.close()
        first_stats.append(baseline_stats)
        results.update({r.engine: r for r in done})
        if judging is None:
            return set()
        return {r.engine for r in done if judging.passes(index[r.engine], r)}

    probe_ms = None
    if judging is not None and judging.probe is not None and len(candidates) > 1:
        probe_ms = judging.probe(candidates)
        pruned = validate_fastest_first(
            probe_ms, judging.prune_ratio, validate, tiers_are_cheap=lambda: baseline.complete
        )
        for label, why in pruned.items():
            engine = candidates[index[label]]
            results[label] = EngineValidation(engine=label, precision=engine.precision, pruned=why.to_dict())
    else:
        validate([e.label for e in candidates])
    baseline_stats = first_stats[0]
    if skip and baseline_stats["samples"] < judged:
        raise too_few_samples(skip + baseline_stats["samples"], skip, judged)
    return [results[e.label] for e in candidates], baseline_stats, counts, probe_ms


def validation_gates(shared: dict[str, str], own: dict[str, dict[str, str]], results: list[EngineValidation]):
    """Every engine's validate gates: the stage's, overridden per metric by the engine's own."""
    gates: list[GateResult] = []
    for result in results:
        if result.pruned:  # never validated, so never chosen: no gates (optcli.fastest_first)
            continue
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
