"""Stages that produce ONNX files: load the PyTorch model, export it, run graph passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optcli import environment
from optcli.backends.onnxruntime import create_session, safe_level
from optcli.export import example_inputs, export_onnx, run_torch
from optcli.gates import evaluate
from optcli.loading import load_torch_model
from optcli.metrics import OutputAccumulator, summarize
from optcli.passes import PASSES
from optcli.stages.context import Run
from optcli.stages.preflight import check_class_output

EXPORT_LOG = "logs/export.log"  # what torch printed during export, relative to the run folder


def load_stage(run: Run) -> None:
    with run.stage("load") as record:
        run.torch_model = load_torch_model(run.recipe.model, run.recipe.base_dir)
        params = sum(p.numel() for p in run.torch_model.parameters())
        record.details = {"source": run.recipe.model.source, "parameters": params}


def export_stage(run: Run) -> None:
    settings = run.recipe.export
    log_path = run.workspace.path(EXPORT_LOG)
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
                log_path=log_path,
            )
        # A TorchScript trace that froze a branch is no error, but the run must say so.
        run.report.warnings += [note for note in result.notes if note.startswith("TorchScript export at")]
        run.output_names = result.output_names
        check_class_output(run.recipe, run.output_names)  # the first point the outputs are known
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
            "log": EXPORT_LOG,
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
    per_output = {}
    for index, (ref, got) in enumerate(zip(run.trace_outputs, produced)):
        acc = OutputAccumulator()
        acc.update(ref, got)
        per_output[str(index)] = acc.result()
    return summarize(per_output)  # NaN-aware worst case: a NaN/Inf output makes the cosine NaN (fails)


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
