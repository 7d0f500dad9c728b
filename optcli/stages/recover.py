"""Diagnosis and accuracy recovery inside the quantize stage (see quantization/recovery.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from optcli.backends.onnxruntime import create_session, safe_level
from optcli.calibration import Batch
from optcli.errors import UserInputError
from optcli.gates import GateResult, evaluate
from optcli.metrics import ClassAccumulator, OutputAccumulator
from optcli.onnx_io import load_model
from optcli.quantization import QUANTIZERS
from optcli.quantization.calibrator import CalibrationCache
from optcli.quantization.diagnose import LayerError, diagnose
from optcli.quantization.recovery import recover
from optcli.quantization.selectors import module_path
from optcli.quantization.summary import ArtifactPrecision
from optcli.stages.context import StageContext
from optcli.stages.data import DataStream, too_few_samples
from optcli.validate import split_samples

PATCH_FILE = "recipe-patch.yaml"


@dataclass
class HeldOut:
    """Validation batches with the baseline's outputs, computed once for every trial."""

    batches: list[Batch]
    reference: list[list[np.ndarray]]
    labels_key: str


@dataclass
class TuningData:
    """What recovery and diagnosis read besides the quantizer's inputs: the validation stream (its
    first samples are for tuning), how many samples validation will judge on after them, the class
    output, and the baseline's outputs for a batch."""

    validation: DataStream
    judged_samples: int
    class_output: int
    reference: Callable[[Batch], list[np.ndarray]]

    @property
    def labels_key(self) -> str:
        return self.validation.context.labels_key or "labels"


def held_out(data: TuningData, samples: int) -> HeldOut:
    """The first `samples` of validate.data, which tuning may use; checks that `judged_samples` more
    follow them, since the validate stage judges on those (never on what recovery tuned on)."""
    needed = samples + data.judged_samples
    batches, rest = split_samples(data.validation.batches(samples=needed), samples)
    name = data.validation.input_names[0]
    tuning = sum(len(b[name]) for b in batches)
    remaining = sum(len(b[name]) for b in rest)
    if tuning + remaining < needed:
        raise too_few_samples(tuning + remaining, samples, needed - samples)
    return HeldOut(batches, [data.reference(b) for b in batches], data.labels_key)


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


def diagnose_stage_model(
    validation: DataStream, float_model: Path, quantized: Path, batches: int
) -> list[LayerError]:
    data = list(validation.batches(samples=validation.batch_size * batches))
    return diagnose(float_model, quantized, data, validation.input_names)


@dataclass
class Recovery:
    details: dict[str, Any]
    gates: list[GateResult]


def recover_accuracy(
    ctx: StageContext,
    settings,
    source: Path,
    quantized: Path,
    details: dict[str, Any],
    calibration: DataStream,
    tuning: TuningData,
    cache: CalibrationCache,
) -> Recovery:
    """Re-quantize with the worst layers in FP32 until the target holds; `quantized` ends as the best."""
    target = settings.accuracy
    class_output = tuning.class_output
    data = held_out(tuning, target.samples)
    initial = measure(quantized, data, target.metric, settings.precision, class_output)
    reference = 1.0
    if target.metric == "accuracy":
        baseline = ClassAccumulator()
        for batch, ref in zip(data.batches, data.reference):
            baseline.update(ref[class_output], ref[class_output], batch.get(data.labels_key))
        reference = baseline.result()["accuracy"]
    float_model = Path(details.get("quantizer_input") or source)
    names = calibration.input_names
    layers = diagnose(float_model, quantized, data.batches[: target.diagnose_batches], names)
    candidates = candidate_groups(float_model, layers)
    work = Path(tempfile.mkdtemp(prefix=".recovery-", dir=quantized.parent))
    best: dict[str, Path] = {}

    def trial(excluded: list[str]) -> float:
        trial_settings = settings.model_copy(deep=True)
        trial_settings.exclude.nodes = [*settings.exclude.nodes, *excluded]
        path = work / f"trial-{len(excluded)}-{len(best)}.onnx"
        QUANTIZERS[settings.quantizer].quantize(
            source, path, trial_settings, calibration.batches(), names, cache=cache
        )
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
    return report_recovery(ctx, target, result, layers, float_model)


def candidate_groups(float_model: Path, layers: list[LayerError]) -> list[list[str]]:
    """Each ranked layer with the compute nodes that consume its output (they would re-quantize it)."""
    graph = load_model(float_model, load_external_data=False).graph
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.name)
    return [[layer.node, *consumers.get(layer.output, [])] for layer in layers]


def report_recovery(
    ctx: StageContext, target, result, layers: list[LayerError], float_model: Path
) -> Recovery:
    nodes = {n.name: n for n in load_model(float_model, load_external_data=False).graph.node}
    modules = sorted({module_path(nodes[n]) for n in result.excluded if n in nodes and module_path(nodes[n])})
    bare = sorted(n for n in result.excluded if n not in nodes or not module_path(nodes[n]))
    patch = {"quantization": {"exclude": {k: v for k, v in (("modules", modules), ("nodes", bare)) if v}}}
    if result.excluded:
        ctx.workspace.write_text(
            PATCH_FILE,
            "# Merge into the recipe to keep these layers in FP32.\n"
            + yaml.safe_dump(patch, sort_keys=False),
        )
    gate = evaluate(
        f"quantization.accuracy.{target.metric}",
        "quantized",
        result.value,
        f">= {result.target!r}",  # exact: the gate must agree with the loop
        f"{len(result.excluded)} node(s) in FP32, {len(result.trials)} trial(s); {result.stopped_by}",
    )
    if not result.passed:
        ctx.warn(
            f"accuracy recovery missed the target: {target.metric} {result.value:.4f} vs {result.target:.4f} "
            f"({result.stopped_by}); the best model found is kept"
        )
    details = {
        **result.to_dict(),
        "kept_in_fp32": {"modules": modules, "nodes": bare},
        "recipe_patch": patch if result.excluded else None,
        "worst_layers": [layer.to_dict() for layer in layers[:10]],
        "tuning_samples": target.samples,
        "tuned_on": f"the first {target.samples} samples of validate.data (the validate stage skips them)",
    }
    return Recovery(details, [gate])


def quantized_share_gate(settings, share: ArtifactPrecision, excluded: int) -> GateResult:
    """The gate that stops recovery from passing by returning (nearly) everything to floating point."""
    minimum = settings.accuracy.min_quantized_share
    requested = settings.precision
    detail = (
        f"after recovery kept {excluded} node(s) in FP32, {100 * share.quantized_share:.1f}% of the "
        f"{share.basis} run in {requested} (artifact precision: {share.label})"
    )
    if share.quantized_share < minimum:
        detail += (
            f"; quantization.accuracy.min_quantized_share is {minimum:g}: the model is no longer an "
            f"{requested} model (the target needs too many layers in FP32)"
        )
    return evaluate(
        "quantization.accuracy.min_quantized_share",
        "quantized",
        share.quantized_share,
        f">= {minimum!r}",
        detail,
    )
