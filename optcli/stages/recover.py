"""Diagnosis and accuracy recovery inside the quantize stage (see quantization/recovery.py)."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from optcli.backends.onnxruntime import create_session, safe_level
from optcli.calibration import Batch, SourceContext, stream
from optcli.errors import UserInputError
from optcli.export import run_torch
from optcli.gates import evaluate
from optcli.metrics import ClassAccumulator, OutputAccumulator
from optcli.onnx_io import load_model
from optcli.quantization import QUANTIZERS
from optcli.quantization.calibrator import CalibrationCache
from optcli.quantization.diagnose import LayerError, diagnose
from optcli.quantization.recovery import recover
from optcli.quantization.selectors import module_path
from optcli.quantization.summary import ArtifactPrecision
from optcli.stages.context import Run
from optcli.validate import split_samples


@dataclass
class HeldOut:
    """Validation batches with the baseline's outputs, computed once for every trial."""

    batches: list[Batch]
    reference: list[list[np.ndarray]]
    labels_key: str


def held_out(run: Run, samples: int) -> HeldOut:
    """The first `samples` of validate.data, which tuning may use; checks that validate.samples more
    follow them, since the validate stage judges on those (never on what recovery tuned on)."""
    settings = run.recipe.validate_
    ctx = SourceContext(run.resolver, run.recipe.base_dir, "validate.data", labels_key=settings.labels)
    needed = samples + (settings.samples if settings.enabled else 0)
    batches, rest = split_samples(
        stream(settings.data, ctx, batch_size=settings.batch_size, samples=needed), samples
    )
    tuning = sum(len(b[ctx.resolver.inputs[0].name]) for b in batches)
    remaining = sum(len(b[ctx.resolver.inputs[0].name]) for b in rest)
    if tuning + remaining < needed:
        raise too_few_samples(tuning + remaining, samples, needed - samples)
    reference = [run_torch(run.torch_model, run.resolver, b) for b in batches]
    return HeldOut(batches, reference, settings.labels)


def too_few_samples(available: int, tuning: int, judged: int) -> UserInputError:
    return UserInputError(
        f"validate.data: yields {available} samples, but {tuning + judged} are needed: accuracy recovery "
        f"tunes on the first {tuning} (quantization.accuracy.samples) and validation judges on the "
        f"{judged} after them (validate.samples), so that the verdict is not given on the samples "
        "recovery tuned on. Add validation data or lower one of the two."
    )


def tuning_samples(run: Run) -> int:
    """How many leading validate.data samples accuracy recovery tuned on (0 when it did not run)."""
    return int((run.report.quantization.get("recovery") or {}).get("tuning_samples", 0))


def measure(model: Path, data: HeldOut, metric: str, precision: str, class_output: int) -> float:
    session = create_session(model, level=safe_level("all", precision))
    names = [i.name for i in session.get_inputs()]
    classes, outputs = ClassAccumulator(), OutputAccumulator()
    for batch, reference in zip(data.batches, data.reference):
        produced = session.run(None, {n: batch[n] for n in names})
        outputs.update(reference[class_output], produced[class_output])
        classes.update(reference[class_output], produced[class_output], batch.get(data.labels_key))
    if metric == "cosine":
        return outputs.result()["cosine"]
    result = classes.result()
    if metric == "accuracy" and "accuracy" not in result:
        raise UserInputError("quantization.accuracy.metric: accuracy needs labels in validate.data")
    return result[metric]


def diagnose_stage_model(run: Run, float_model: Path, quantized: Path, batches: int) -> list[LayerError]:
    names = [s.name for s in run.recipe.model.inputs]
    settings = run.recipe.validate_
    ctx = SourceContext(run.resolver, run.recipe.base_dir, "validate.data")
    data = list(
        stream(settings.data, ctx, batch_size=settings.batch_size, samples=settings.batch_size * batches)
    )
    return diagnose(float_model, quantized, data, names)


def recover_accuracy(run: Run, source: Path, quantized: Path, details: dict[str, Any]) -> dict[str, Any]:
    """Re-quantize with the worst layers in FP32 until the target holds; `quantized` ends as the best."""
    settings = run.recipe.quantization
    target = settings.accuracy
    class_output = run.recipe.validate_.class_output or 0
    data = held_out(run, target.samples)
    initial = measure(quantized, data, target.metric, settings.precision, class_output)
    reference = 1.0
    if target.metric == "accuracy":
        baseline = ClassAccumulator()
        for batch, ref in zip(data.batches, data.reference):
            baseline.update(ref[class_output], ref[class_output], batch.get(data.labels_key))
        reference = baseline.result()["accuracy"]
    float_model = Path(details.get("quantizer_input") or source)
    names = [s.name for s in run.recipe.model.inputs]
    layers = diagnose(float_model, quantized, data.batches[: target.diagnose_batches], names)
    candidates = candidate_groups(float_model, layers)
    cache = CalibrationCache(run.workspace.root / "calibration", details.get("calibration_key", ""))
    work = Path(tempfile.mkdtemp(prefix=".recovery-", dir=quantized.parent))
    best: dict[str, Path] = {}

    def trial(excluded: list[str]) -> float:
        trial_settings = settings.model_copy(deep=True)
        trial_settings.exclude.nodes = [*settings.exclude.nodes, *excluded]
        ctx = SourceContext(run.resolver, run.recipe.base_dir, "quantization.calibration.data")
        batches = stream(
            settings.calibration.data,
            ctx,
            batch_size=settings.calibration.batch_size,
            samples=settings.calibration.samples,
        )
        path = work / f"trial-{len(excluded)}-{len(best)}.onnx"
        QUANTIZERS[settings.quantizer].quantize(source, path, trial_settings, batches, names, cache=cache)
        best[",".join(excluded)] = path
        return measure(path, data, target.metric, settings.precision, class_output)

    try:
        result = recover(
            candidates,
            trial,
            initial_value=initial,
            target=reference - target.max_drop,
            max_trials=target.max_trials,
            time_budget_s=target.time_budget_s,
        )
        if result.excluded:
            shutil.copyfile(best[",".join(result.excluded)], quantized)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report_recovery(run, result, layers, float_model)


def candidate_groups(float_model: Path, layers: list[LayerError]) -> list[list[str]]:
    """Each ranked layer with the compute nodes that consume its output (they would re-quantize it)."""
    graph = load_model(float_model, load_external_data=False).graph
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.name)
    return [[layer.node, *consumers.get(layer.output, [])] for layer in layers]


def report_recovery(run: Run, result, layers: list[LayerError], float_model: Path) -> dict[str, Any]:
    target = run.recipe.quantization.accuracy
    nodes = {n.name: n for n in load_model(float_model, load_external_data=False).graph.node}
    modules = sorted({module_path(nodes[n]) for n in result.excluded if n in nodes and module_path(nodes[n])})
    bare = sorted(n for n in result.excluded if n not in nodes or not module_path(nodes[n]))
    patch = {"quantization": {"exclude": {k: v for k, v in (("modules", modules), ("nodes", bare)) if v}}}
    if result.excluded:
        run.workspace.write_text(
            "recipe-patch.yaml",
            "# Merge into the recipe to keep these layers in FP32.\n"
            + yaml.safe_dump(patch, sort_keys=False),
        )
    run.report.gates.append(
        evaluate(
            f"quantization.accuracy.{target.metric}",
            "quantized",
            result.value,
            f">= {result.target!r}",  # exact: the gate must agree with the loop
            f"{len(result.excluded)} node(s) in FP32, {len(result.trials)} trial(s); {result.stopped_by}",
        )
    )
    if not result.passed:
        run.report.warnings.append(
            f"accuracy recovery missed the target: {target.metric} {result.value:.4f} vs {result.target:.4f} "
            f"({result.stopped_by}); the best model found is kept"
        )
    return {
        **result.to_dict(),
        "kept_in_fp32": {"modules": modules, "nodes": bare},
        "recipe_patch": patch if result.excluded else None,
        "worst_layers": [layer.to_dict() for layer in layers[:10]],
        "tuning_samples": target.samples,
        "tuned_on": f"the first {target.samples} samples of validate.data (the validate stage skips them)",
    }


def check_quantized_share(run: Run, share: ArtifactPrecision, excluded: int) -> None:
    """The gate that stops recovery from passing by returning (nearly) everything to floating point."""
    minimum = run.recipe.quantization.accuracy.min_quantized_share
    requested = run.recipe.quantization.precision
    detail = (
        f"after recovery kept {excluded} node(s) in FP32, {100 * share.quantized_share:.1f}% of the "
        f"{share.basis} run in {requested} (artifact precision: {share.label})"
    )
    if share.quantized_share < minimum:
        detail += (
            f"; quantization.accuracy.min_quantized_share is {minimum:g}: the model is no longer an "
            f"{requested} model (the target needs too many layers in FP32)"
        )
    run.report.gates.append(
        evaluate(
            "quantization.accuracy.min_quantized_share",
            "quantized",
            share.quantized_share,
            f">= {minimum!r}",
            detail,
        )
    )
