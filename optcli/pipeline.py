"""Runs a recipe's stages in order: load, export, passes, quantize, build, validate, benchmark, report.

Each stage takes the previous stage's artifact and records what it produced in the report.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from optcli import environment
from optcli.backends import Engine, EngineContext, create_engine
from optcli.backends.onnxruntime import create_session, safe_level
from optcli.backends.torch_eager import TorchConfig, TorchEagerEngine
from optcli.bench import measure
from optcli.calibration import SourceContext, is_synthetic, sample_digests, stream
from optcli.calibration.synthetic import random_batch
from optcli.errors import UserInputError
from optcli.export import example_inputs, export_onnx, run_torch
from optcli.gates import evaluate
from optcli.loading import load_torch_model
from optcli.metrics import OutputAccumulator
from optcli.passes import PASSES
from optcli.quantization import QUANTIZERS
from optcli.recipe import Recipe
from optcli.report.model import RunReport, StageRecord
from optcli.specs import ShapeResolver
from optcli.validate import validate_engines
from optcli.workspace import Workspace


class UI(Protocol):
    """What the pipeline tells the person watching (the CLI draws it with rich)."""

    def stage_started(self, name: str) -> None: ...
    def stage_finished(self, record: StageRecord) -> None: ...
    def progress(self, description: str, total: int | None) -> Any: ...
    def warn(self, message: str) -> None: ...


@dataclass
class Run:
    recipe: Recipe
    workspace: Workspace
    ui: UI
    report: RunReport
    resolver: ShapeResolver
    artifacts: dict[str, Path] = field(default_factory=dict)
    precisions: dict[str, str] = field(default_factory=dict)
    output_names: list[str] = field(default_factory=list)
    trace_inputs: dict[str, Any] = field(default_factory=dict)
    trace_outputs: list[Any] = field(default_factory=list)
    torch_model: Any = None
    calibration_digests: set[bytes] = field(default_factory=set)

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        self.ui.stage_started(name)
        record = StageRecord(name=name, seconds=0.0)
        start = time.perf_counter()
        yield record
        record.seconds = round(time.perf_counter() - start, 3)
        self.report.stages.append(record)
        self.ui.stage_finished(record)


def run_recipe(recipe: Recipe, out_dir: Path, ui: UI) -> RunReport:
    """Run every stage; the report is written even when a stage raises (status 'error')."""
    workspace = Workspace(out_dir).prepare()
    resolved = recipe.model_dump(mode="json", by_alias=True)
    report = RunReport(
        recipe={
            "name": recipe.name,
            "file": str(recipe.source_file) if recipe.source_file else None,
            "sha256": hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16],
            "resolved": resolved,
        }
    )
    model = recipe.model
    run = Run(recipe, workspace, ui, report, ShapeResolver(model.inputs, model.dims, model.batch_dim))
    try:
        report.environment = environment.describe()
        load_stage(run)
        export_stage(run)
        passes_stage(run)
        quantize_stage(run)
        engines = build_stage(run)
        try:
            validate_stage(run, engines)
            benchmark_stage(run, engines)
        finally:
            for engine in engines:
                engine.close()
        report.status = "finished"
    except BaseException:
        report.status = "error"
        raise
    finally:
        write_reports(run)
    return report


def load_stage(run: Run) -> None:
    with run.stage("load") as record:
        run.torch_model = load_torch_model(run.recipe.model, run.recipe.base_dir)
        params = sum(p.numel() for p in run.torch_model.parameters())
        record.details = {"source": run.recipe.model.source, "parameters": params}


def export_stage(run: Run) -> None:
    settings = run.recipe.export
    with run.stage("export") as record:
        with run.workspace.staged("exported.onnx") as tmp:
            result = export_onnx(
                run.torch_model,
                run.resolver,
                tmp,
                exporter=settings.exporter,
                opset=settings.opset,
                output_names=run.recipe.model.outputs,
                external_data=settings.external_data,
            )
        run.output_names = result.output_names
        run.artifacts["exported"] = run.workspace.path("exported.onnx")
        run.precisions["exported"] = "fp32"
        run.trace_inputs = example_inputs(run.resolver)
        run.trace_outputs = run_torch(run.torch_model, run.resolver, run.trace_inputs)
        if not all(np.isfinite(output).all() for output in run.trace_outputs):
            run.report.warnings.append(
                "PyTorch outputs contain NaN/Inf on the synthetic trace inputs; comparisons on them "
                "are meaningless (check integer input ranges, e.g. an all-zero attention mask)"
            )
        record.artifact = str(run.artifacts["exported"])
        record.details = {
            "exporter": result.exporter,
            "opset": settings.opset,
            "notes": result.notes,
        }
        run.report.provenance["exported_onnx_sha256"] = environment.file_digest(run.artifacts["exported"])
        if settings.verify:
            worst = compare_with_reference(run, run.artifacts["exported"])
            record.details["verification"] = worst
            run.report.gates.append(
                evaluate(
                    "export.cosine",
                    "exported",
                    worst["cosine"],
                    f">= {settings.min_cosine}",
                    "ONNX Runtime vs PyTorch, one batch",
                )
            )


def compare_with_reference(run: Run, model_path: Path, precision: str = "fp32") -> dict[str, float]:
    """Worst per-output metrics of an ONNX file vs the PyTorch outputs on the trace batch."""
    session = create_session(model_path, level=safe_level("all", precision))
    names = [i.name for i in session.get_inputs()]
    produced = session.run(None, {n: run.trace_inputs[n] for n in names})
    worst = {"cosine": 1.0, "max_abs": 0.0, "rel_l2": 0.0, "non_finite": 0.0}
    for ref, got in zip(run.trace_outputs, produced):
        acc = OutputAccumulator()
        acc.update(ref, got)
        metrics = acc.result()
        worst = {
            "cosine": min(worst["cosine"], metrics["cosine"]),
            "max_abs": max(worst["max_abs"], metrics["max_abs"]),
            "rel_l2": max(worst["rel_l2"], metrics["rel_l2"]),
            "non_finite": worst["non_finite"] + metrics["non_finite"],
        }
    return worst


def passes_stage(run: Run) -> None:
    if not run.recipe.passes:
        return
    current = run.artifacts["exported"]
    precision = "fp32"
    for index, options in enumerate(run.recipe.passes):
        graph_pass = PASSES[options.name]
        name = f"pass-{index + 1}-{graph_pass.name}.onnx"
        with run.stage(f"pass:{graph_pass.name}") as record, run.workspace.staged(name) as tmp:
            summary = graph_pass.apply(current, tmp, options)
            worst = compare_with_reference(run, tmp)
            record.details = {
                "summary": summary,
                "vs_pytorch": worst,
                "tolerance": graph_pass.tolerance.model_dump(),
            }
            record.artifact = str(run.workspace.path(name))
        tolerance = graph_pass.tolerance
        run.report.gates.append(
            evaluate(
                f"pass.{graph_pass.name}.cosine",
                "optimized",
                worst["cosine"],
                f">= {tolerance.min_cosine}",
                "vs PyTorch, one batch",
            )
        )
        current = run.workspace.path(name)
        precision = "fp16" if graph_pass.name == "fp16" else precision
    run.artifacts["optimized"] = current
    run.precisions["optimized"] = precision


def quantize_stage(run: Run) -> None:
    settings = run.recipe.quantization
    if settings is None or settings.precision == "fp32":
        return
    source = list(run.artifacts.values())[-1]
    with (
        run.stage(f"quantize:{settings.precision}") as record,
        run.workspace.staged("quantized.onnx") as tmp,
    ):
        if settings.precision == "fp16":
            fp16 = PASSES["fp16"]
            record.details = {"summary": fp16.apply(source, tmp, fp16.options())}
        else:
            record.details = calibrate_and_quantize(run, source, tmp)
        record.details["vs_pytorch"] = compare_with_reference(run, tmp, settings.precision)
        record.artifact = str(run.workspace.path("quantized.onnx"))
    run.artifacts["quantized"] = run.workspace.path("quantized.onnx")
    run.precisions["quantized"] = settings.precision


def calibrate_and_quantize(run: Run, source: Path, dst: Path) -> dict[str, Any]:
    settings = run.recipe.quantization
    calibration = settings.calibration
    ctx = SourceContext(run.resolver, run.recipe.base_dir, "quantization.calibration.data")
    digests = run.calibration_digests
    names = [spec.name for spec in run.recipe.model.inputs]
    progress = run.ui.progress("calibrating", total=calibration.samples)

    def tracked() -> Iterator[dict]:
        for batch in stream(
            calibration.data, ctx, batch_size=calibration.batch_size, samples=calibration.samples
        ):
            digests.update(sample_digests(batch, names))
            progress.advance(len(batch[names[0]]))
            yield batch

    try:
        details = QUANTIZERS[settings.quantizer](source, dst, settings, tracked(), names)
    finally:
        progress.close()
    details["calibration_samples"] = len(digests)
    details["calibration_data"] = calibration.data.model_dump()
    details["synthetic_calibration"] = is_synthetic(calibration.data)
    if details["synthetic_calibration"]:
        run.report.warnings.append(
            "calibration used synthetic random data: it proves the pipeline works, not that the "
            "quantized model is accurate on real inputs"
        )
    if details["unmatched_exclude_patterns"]:
        run.report.warnings.append(
            f"quantization.exclude.nodes patterns matched no node: {details['unmatched_exclude_patterns']}"
        )
    digest = hashlib.sha256(b"".join(sorted(digests))).hexdigest()[:16]
    run.report.provenance["calibration_data_sha256"] = digest
    return details


def build_stage(run: Run) -> list[Engine]:
    context = EngineContext(
        artifacts=run.artifacts,
        precisions=run.precisions,
        torch_model=lambda: run.torch_model,
        input_names=[s.name for s in run.recipe.model.inputs],
        output_names=run.output_names,
    )
    baseline = TorchEagerEngine(
        TorchConfig(name="pytorch-eager-fp32", threads=run.recipe.benchmark.threads), context
    )
    engines: list[Engine] = [baseline]
    with run.stage("build") as record:
        for config in run.recipe.build:
            if run.recipe.benchmark.threads and getattr(config, "threads", "n/a") is None:
                config = config.model_copy(update={"threads": run.recipe.benchmark.threads})
            engines.append(create_engine(config, context))
        labels = [e.label for e in engines]
        if len(set(labels)) != len(labels):
            raise UserInputError(f"build: engines share a name {labels}; give each a distinct 'name'")
        for engine in engines:
            engine.load()
        run.report.engines = [{"label": e.label, "baseline": e is baseline, **e.describe()} for e in engines]
        record.details = {"engines": labels}
    return engines


def validate_stage(run: Run, engines: list[Engine]) -> None:
    settings = run.recipe.validate_
    if not settings.enabled:
        return
    calibration = run.recipe.quantization.calibration if run.recipe.quantization else None
    if calibration and calibration.data == settings.data:
        raise UserInputError(
            "validate.data: is the same source as quantization.calibration.data; validation must use "
            "held-out data (for synthetic data, use another seed)"
        )
    baseline, candidates = engines[0], engines[1:]
    ctx = SourceContext(run.resolver, run.recipe.base_dir, "validate.data", labels_key=settings.labels)
    names = [s.name for s in run.recipe.model.inputs]
    overlap = 0
    with run.stage("validate") as record:
        progress = run.ui.progress("validating", total=settings.samples)

        def tracked() -> Iterator[dict]:
            nonlocal overlap
            for batch in stream(settings.data, ctx, batch_size=settings.batch_size, samples=settings.samples):
                overlap += sum(d in run.calibration_digests for d in sample_digests(batch, names))
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
        record.details = {"samples": baseline_stats["samples"], "overlap_with_calibration": overlap}
    if overlap:
        run.report.warnings.append(f"{overlap} validation samples were also used for calibration")
    synthetic = is_synthetic(settings.data)
    if synthetic:
        run.report.warnings.append(
            "validation used synthetic data: metrics compare engines, not task accuracy"
        )
    run.report.validation = {
        "data": settings.data.model_dump(),
        "synthetic": synthetic,
        "samples": baseline_stats["samples"],
        "overlap_with_calibration": overlap,
        "baseline": baseline_stats,
        "engines": [
            {
                **r.to_dict(),
                "baseline_metrics": {k: v for k, v in baseline_stats.items() if k == "accuracy"},
            }
            for r in results
        ],
    }
    for result in results:
        for metric, expr in settings.gates.items():
            value = result.metric(metric)
            detail = "" if value is not None else "metric not available (no labels or no class output)"
            run.report.gates.append(evaluate(f"validate.{metric}", result.engine, value, expr, detail))


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
    for result in results:
        if result.engine == engines[0].label:
            continue
        values = {
            "speedup": result.speedup,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "throughput": result.throughput,
        }
        for metric, expr in settings.gates.items():
            run.report.gates.append(
                evaluate(
                    f"benchmark.{metric}",
                    result.engine,
                    values[metric],
                    expr,
                    f"batch size {result.batch_size}",
                )
            )


def write_reports(run: Run) -> None:
    from optcli.report.markdown import render_markdown

    data = run.report.to_dict()
    if "json" in run.recipe.report.formats:
        run.workspace.write_json("report.json", data)
    if "md" in run.recipe.report.formats:
        run.workspace.write_text("report.md", render_markdown(data))
