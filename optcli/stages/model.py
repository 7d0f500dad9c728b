"""Stages that produce ONNX files: load the PyTorch model (only when a stage needs it), export it,
run graph passes. Export and each pass are cached by their settings and input digests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optcli.artifacts import Artifact
from optcli.cache import make_key
from optcli.export import example_inputs, export_onnx, run_torch
from optcli.gates import GateResult, evaluate
from optcli.metrics import OutputAccumulator, summarize
from optcli.passes import PASSES
from optcli.specs import ShapeResolver
from optcli.stages.cached import cached_artifact, restore, store
from optcli.stages.context import StageContext
from optcli.stages.data import LazyModel

EXPORT_LOG = "logs/export.log"  # what torch printed during export, relative to the run folder


@dataclass
class Reference:
    """PyTorch's outputs on the trace batch: what export and every pass are checked against."""

    inputs: dict[str, np.ndarray]
    outputs: list[np.ndarray]

    def save(self, path: Path) -> Path:
        arrays = {f"in:{k}": v for k, v in self.inputs.items()}
        arrays.update({f"out:{i}": v for i, v in enumerate(self.outputs)})
        with open(path, "wb") as handle:
            np.savez(handle, **arrays)
        return path

    @classmethod
    def load(cls, path: Path) -> Reference:
        with np.load(path) as data:
            inputs = {k[3:]: data[k] for k in data.files if k.startswith("in:")}
            outputs = [data[f"out:{i}"] for i in range(sum(k.startswith("out:") for k in data.files))]
        return cls(inputs, outputs)


@dataclass
class Exported:
    artifact: Artifact
    output_names: list[str]
    reference: Reference
    gates: list[GateResult]


def export_stage(
    ctx: StageContext,
    settings,
    output_names: list[str] | None,
    model: LazyModel,
    resolver: ShapeResolver,
    model_key: dict,
) -> Exported:
    # min_cosine is a gate threshold, not an input of the export: changing it reuses the export.
    key = make_key(
        "export",
        {"export": settings.model_dump(exclude={"min_cosine"}), "model": model_key, "versions": ctx.versions},
    )
    entry = ctx.cache.get("export", key)
    with ctx.stage("export") as record:
        if entry is not None:
            path = restore(ctx, entry, "exported.onnx")
            artifact = cached_artifact(entry, path, "export")
            reference = Reference.load(entry.path("reference.npz"))
            details, names = entry.meta["details"], entry.meta["output_names"]
        else:
            artifact, reference, details, names = _export(ctx, settings, output_names, model, resolver, key)
        record.artifact = str(artifact.path)
        record.details = {**details, "cached": entry is not None, "cache_key": key}
    for note in details["notes"]:  # a TorchScript trace that froze a branch is no error, but say so
        if note.startswith("TorchScript export at"):
            ctx.warn(note)
    if not all(np.isfinite(output).all() for output in reference.outputs):
        ctx.warn(
            "PyTorch outputs contain NaN/Inf on the synthetic trace inputs; comparisons on them "
            "are meaningless (check integer input ranges, e.g. an all-zero attention mask)"
        )
    gates = []
    if settings.verify:
        worst = details["verification"]
        gates.append(
            evaluate(
                "export.cosine",
                "exported",
                worst["cosine"],
                f">= {settings.min_cosine}",
                "ONNX Runtime vs PyTorch, one batch",
            )
        )
    return Exported(artifact, names, reference, gates)


def _export(ctx: StageContext, settings, output_names, model: LazyModel, resolver, key: str):
    torch_model = model.get()
    ctx.current_stage = "export"
    with ctx.workspace.staged("exported.onnx") as tmp:
        result = export_onnx(
            torch_model,
            resolver,
            tmp,
            exporter=settings.exporter,
            opset=settings.opset,
            output_names=output_names,
            external_data=settings.external_data,
            log_path=ctx.workspace.path(EXPORT_LOG),
        )
    path = ctx.workspace.path("exported.onnx")
    inputs = example_inputs(resolver)
    reference = Reference(inputs, run_torch(torch_model, resolver, inputs))
    details: dict[str, Any] = {
        "exporter": result.exporter,
        "opset": settings.opset,
        "notes": result.notes,
        "log": EXPORT_LOG,
    }
    if settings.verify:
        details["verification"] = compare_with_reference(reference, path)
    artifact = Artifact("exported", path, "onnx", "fp32", "export", cache_key=key)
    staged_reference = reference.save(ctx.workspace.path(".reference.npz"))
    meta = {"details": details, "output_names": result.output_names}
    store(ctx, "export", key, artifact, meta, **{"reference.npz": staged_reference})
    staged_reference.unlink()
    return artifact, reference, details, result.output_names


def compare_with_reference(
    reference: Reference, model_path: Path, precision: str = "fp32"
) -> dict[str, float]:
    """Worst per-output metrics of an ONNX file vs the PyTorch outputs on the trace batch."""
    from optcli.backends.onnxruntime import safe_level
    from optcli.ort_session import create_session

    session = create_session(model_path, level=safe_level("all", precision))
    names = [i.name for i in session.get_inputs()]
    produced = session.run(None, {n: reference.inputs[n] for n in names})
    per_output = {}
    for index, (ref, got) in enumerate(zip(reference.outputs, produced)):
        acc = OutputAccumulator()
        acc.update(ref, got)
        per_output[str(index)] = acc.result()
    return summarize(per_output)  # NaN-aware worst case: a NaN/Inf output makes the cosine NaN (fails)


def passes_stage(
    ctx: StageContext, passes: list, source: Artifact, reference: Reference
) -> tuple[Artifact | None, list[GateResult]]:
    """Run the recipe's passes in order; returns the 'optimized' artifact (None without passes)."""
    current, gates = source, []
    for index, options in enumerate(passes):
        graph_pass = PASSES[options.name]
        name = f"pass-{index + 1}-{graph_pass.name}.onnx"
        key = make_key(
            "pass", {"options": options.model_dump(), "input": current.sha256, "versions": ctx.versions}
        )
        entry = ctx.cache.get("pass", key)
        with ctx.stage(f"pass:{graph_pass.name}") as record:
            if entry is not None:
                current = cached_artifact(entry, restore(ctx, entry, name), "passes")
                details = entry.meta["details"]
            else:
                with ctx.workspace.staged(name) as tmp:
                    summary = graph_pass.apply(current.path, tmp, options)
                    worst = compare_with_reference(reference, tmp)
                precision = graph_pass.produces_precision or current.precision
                current = Artifact("optimized", ctx.workspace.path(name), "onnx", precision, "passes", key)
                details = {
                    "summary": summary,
                    "vs_pytorch": worst,
                    "tolerance": graph_pass.tolerance.model_dump(),
                }
                store(ctx, "pass", key, current, {"details": details})
            record.details = {**details, "cached": entry is not None, "cache_key": key}
            record.artifact = str(current.path)
        gates.append(
            evaluate(
                f"pass.{graph_pass.name}.cosine",
                "optimized",
                details["vs_pytorch"]["cosine"],
                f">= {graph_pass.tolerance.min_cosine}",
                "vs PyTorch, one batch",
            )
        )
    return (current if passes else None), gates
