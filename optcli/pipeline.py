"""Runs a recipe: plan, then the stages top to bottom, each a function of explicit inputs returning
typed results; this file is the only place that wires them and writes them into the report.

    plan ─ export ─ passes ─ quantize (─ quantize-nncf) ─ build ─ validate ─ benchmark ─ select ─ report

Export, passes, quantization and validation results are cached by content (stage cache); the
PyTorch model is loaded only when a stage that needs it is not cached.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from optcli import environment
from optcli.artifacts import Artifact
from optcli.cache import StageCache
from optcli.compare import Against
from optcli.errors import UserInputError
from optcli.export import run_torch
from optcli.plan import Machine, Plan
from optcli.recipe import Recipe
from optcli.report.model import RunReport, command_record
from optcli.run_folder import locked_run, recipe_record, recorded
from optcli.specs import ShapeResolver
from optcli.stages.benchmark import benchmark_stage
from optcli.stages.build import Built, build_stage, engine_context
from optcli.stages.context import UI, StageContext
from optcli.stages.data import LazyModel, RunData, open_data
from optcli.stages.keys import model_fingerprint
from optcli.stages.mixed import mixed_inputs, mixed_stage
from optcli.stages.mixed_source import choose_mixed_source
from optcli.stages.model import export_stage, passes_stage
from optcli.stages.preflight import check_class_output, check_id_ranges, preflight
from optcli.stages.quantize import calibration_sha256, nncf_stage, quantize_stage
from optcli.stages.recover import TuningData
from optcli.stages.target import latency_probe, select, to_benchmark
from optcli.stages.validate import judging_of, validate_stage, validation_gates, validation_key


def run_recipe(
    recipe: Recipe,
    out_dir: Path,
    ui: UI,
    *,
    through_quantization: bool = False,
    wait: bool = False,
    cache: StageCache | None = None,
    against: Against | None = None,
) -> RunReport:
    """Run every stage (or stop after quantization, for `optcli diagnose`); with `against`, add
    the regression gates vs that stored report.

    The run folder is locked for the whole run (another run into it exits 2, or waits with
    `wait`). report.json is written when the run starts (status 'running') and again when it
    ends, also when a stage raises or a signal stops it (status 'error' / 'interrupted', with
    the stage in `error`)."""
    if getattr(recipe, "pipeline", None) == "llm":  # a Hugging Face checkpoint, not ONNX (optcli/llm)
        from optcli.llm.pipeline import run_llm_recipe

        if against is not None:
            raise UserInputError("--against: regression gates are not available for pipeline: llm yet")
        return run_llm_recipe(recipe, out_dir, ui, wait=wait, cache=cache)
    with locked_run(out_dir, ui, wait=wait, cache=cache, versions=cache_versions()) as ctx:
        return _run_locked(recipe, ctx, through_quantization, against)


def cache_versions() -> dict[str, str]:
    """What every cache key carries of the software: package versions and a digest of optcli's own
    source, so an edited checkout (an editable install keeps its version number) never reads
    results an older optcli computed."""
    source = hashlib.sha256()
    package = Path(__file__).parent
    for path in sorted(package.rglob("*.py")):
        source.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    return {**environment.package_versions(), "optcli-source": source.hexdigest()[:16]}


def _run_locked(recipe: Recipe, ctx: StageContext, through_quantization: bool, against=None) -> RunReport:
    report = RunReport(recipe=recipe_record(recipe), command=command_record(sys.argv))
    artifacts: dict[str, Artifact] = {}
    with recorded(ctx, recipe, report, artifacts):
        ctx.enter("preflight")
        checked = preflight(recipe, Machine.here(), engines=not through_quantization)
        report.skipped = checked.skipped
        for note in checked.plan.notes:
            ctx.warn(note)
        _execute(ctx, recipe, checked.plan, report, artifacts, through_quantization)
        if against is not None:  # gates vs a stored report, like any other gate (optcli/compare.py)
            report.regression = against.apply(recipe, report, ctx.workspace.root / "report.json")
    return report


def _execute(
    ctx: StageContext,
    recipe: Recipe,
    plan: Plan,
    report: RunReport,
    artifacts: dict[str, Artifact],
    through_quantization: bool,
) -> None:
    section = recipe.model
    resolver = ShapeResolver(section.inputs, section.dims, section.batch_dim)
    data = open_data(recipe, resolver, ctx.warn)
    model = LazyModel(ctx, section, recipe.base_dir)
    model_key = model_fingerprint(section, recipe.base_dir)

    exported = export_stage(ctx, recipe.export, section.outputs, model, resolver, model_key)
    check_class_output(recipe, exported.output_names)  # the first point the outputs are known
    check_id_ranges(recipe, exported.artifact.path, data)  # and the embedding tables' sizes
    artifacts["exported"] = exported.artifact
    report.gates += exported.gates
    report.provenance["exported_onnx_sha256"] = exported.artifact.sha256

    optimized, pass_gates = passes_stage(ctx, recipe.passes, exported.artifact, exported.reference)
    report.gates += pass_gates
    if optimized is not None:
        artifacts["optimized"] = optimized
    float_artifact = optimized or exported.artifact

    quantized = None
    sizes = resolver.sizes(batch_size=1)
    if "quantized" in plan.artifacts:
        tuning = _tuning_data(recipe, data, model, resolver)
        quantized = quantize_stage(ctx, recipe.quantization, float_artifact, data.calibration, tuning, sizes)
        artifacts["quantized"] = quantized.artifact
        report.quantization = quantized.report
        report.gates += quantized.gates
        report.provenance["calibration_data_sha256"] = calibration_sha256(quantized.calibration_digests)
    if "quantized_nncf" in plan.artifacts:
        nncf = nncf_stage(ctx, recipe.quantization, float_artifact, data.calibration, sizes)
        artifacts["quantized_nncf"] = nncf
        report.quantization.setdefault("artifacts", {})["quantized_nncf"] = nncf.precision_detail
    if "quantized_mixed" in plan.artifacts and not through_quantization:
        hardware = {k: report.environment.get(k) for k in ("cpu", "cpu_features")}
        names, probe = exported.output_names, latency_probe(recipe.benchmark, plan.target, resolver)
        context = engine_context(ctx, artifacts, model, section, names)
        source = choose_mixed_source(ctx, plan, artifacts, context, probe, hardware, Machine.here())
        calibration = data.calibration
        inputs = mixed_inputs(recipe, plan, artifacts, calibration, tuning, names, sizes, source.artifact)
        mixed = mixed_stage(ctx, inputs, hardware)
        report.quantization["mixed_precision"] = {**mixed.details, "source": source.to_dict()}
        quantized.tuning_samples = max(quantized.tuning_samples, mixed.tuning_samples)
        if mixed.artifact is not None:
            artifacts["quantized_mixed"] = mixed.artifact
            report.quantization["artifacts"]["quantized_mixed"] = mixed.artifact.precision_detail
        else:  # not needed, or none found: its candidate is not built
            plan.engines = [e for e in plan.engines if e.artifact != "quantized_mixed"]
    if through_quantization:
        return
    if plan.target is not None:
        report.selection = {
            "target": plan.target,
            "candidates": [e.label for e in plan.runnable],
            "added": [e.label for e in plan.runnable if e.origin == "target"],
            "not_available": plan.not_available,
        }
    _measure(
        ctx,
        recipe,
        plan,
        report,
        artifacts,
        model,
        model_key,
        exported.output_names,
        data,
        quantized,
        resolver,
    )


def _measure(
    ctx, recipe, plan, report, artifacts, model, model_key, output_names, data: RunData, quantized, resolver
):
    """Build (only if something needs the engines), validate, benchmark, select."""
    section = recipe.model
    configs = [e.config for e in plan.runnable]
    built: list[Built] = []

    def engines() -> Built:
        if not built:
            calibration = data.calibration.batches if data.calibration is not None else None
            built.append(
                build_stage(ctx, configs, plan.baseline, artifacts, model, section, output_names, calibration)
            )
        return built[0]

    try:
        described: list[dict[str, Any]] = []
        pruned: dict[str, dict[str, Any]] = {}  # candidates validation left out (optcli.fastest_first)
        if recipe.validate_.enabled:
            identity = {
                "baseline": plan.baseline.model_dump(mode="json"),
                "model": model_key,
                "engines": [_engine_identity(e, artifacts) for e in plan.runnable],
                "calibration": data.calibration.fingerprint() if data.calibration is not None else None,
                "outputs": output_names,
                # Kernels differ by ISA (ORT's INT8 Gemm without VNNI, BF16 paths): metrics measured
                # on another CPU or GPU are not this machine's, even from a shared cache.
                "hardware": {k: report.environment.get(k) for k in ("cpu", "cpu_features", "gpu")},
            }
            skip = quantized.tuning_samples if quantized else 0
            probe = latency_probe(recipe.benchmark, plan.target, resolver)  # target runs: fastest first
            class_output = recipe.validate_.class_output
            key = validation_key(ctx, identity, data.validation, skip, class_output)
            validation = validate_stage(
                ctx,
                key,
                engines,
                data.validation,
                judged=recipe.validate_.samples,
                skip=skip,
                class_output=class_output,
                output_names=output_names,
                calibration_digests=quantized.calibration_digests if quantized else set(),
                judging=judging_of(recipe.validate_, configs, probe),
            )
            described = validation.engines
            report.validation = validation.report
            pruned = {r.engine: r.pruned for r in validation.results if r.pruned}
            own = _own_gates(described, configs)
            report.gates += validation_gates(recipe.validate_.gates, own, validation.results)
        benchmark = None
        if recipe.benchmark.enabled:
            # With a target, a candidate that failed its validate gates cannot be chosen: not timed.
            timed = engines().engines
            if plan.target:
                timed = to_benchmark(timed, report.gates, pruned)
            ctx.enter("benchmark")
            own = _own_gates(engines().descriptions, configs)
            benchmark = benchmark_stage(ctx, recipe.benchmark, timed, resolver, own, data.validation)
            report.benchmark = benchmark.report()
            report.gates += benchmark.gates
        report.engines = described or engines().descriptions
        if plan.target is not None:
            ctx.enter("select")
            labels = [e["label"] for e in report.engines if not e["baseline"]]
            precisions = {e["label"]: e["precision"] for e in report.engines}
            latency = benchmark.results if benchmark is not None else []
            mixed = (report.quantization or {}).get("mixed_precision") or {}
            extra = {mixed["engine"]: {"kept_float": mixed["kept_float"]}} if "kept_float" in mixed else {}
            batch = recipe.benchmark.batch_sizes[0]
            choice = select(labels, precisions, report.gates, latency, batch, extra=extra, pruned=pruned)
            report.selection.update({"candidates": labels, **choice})
            if choice["chosen"] is None:
                ctx.warn(f"target {plan.target}: no candidate passed the validate gates")
    finally:
        for done in built:
            done.close()


def _engine_identity(engine, artifacts: dict[str, Artifact]) -> dict[str, Any]:
    artifact = artifacts.get(engine.artifact) if engine.artifact else None
    return {
        "config": engine.config.model_dump(mode="json", exclude={"gates"}),
        "artifact": artifact.sha256 if artifact else None,
    }


def _own_gates(descriptions: list[dict[str, Any]], configs: list[Any]) -> dict[str, dict[str, str]]:
    """Each engine's own `gates`, by its label (descriptions: the baseline first, then `configs`)."""
    return {d["label"]: config.gates for d, config in zip(descriptions[1:], configs)}


def _tuning_data(recipe: Recipe, data: RunData, model: LazyModel, resolver: ShapeResolver) -> TuningData:
    settings = recipe.validate_
    return TuningData(
        validation=data.validation,
        judged_samples=settings.samples if settings.enabled else 0,
        class_output=settings.class_output or 0,
        reference=lambda batch: run_torch(model.get(), resolver, batch),
    )
