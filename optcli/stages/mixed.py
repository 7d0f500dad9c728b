"""`target: cpu` mixed precision: when the fastest INT8 candidate misses the validate gates on the
tuning samples, keep the fewest layers in floating point on that engine (quantization/
mixed_precision.py), re-quantize with the quantizer's own exclusions and hand the result on as the
artifact `quantized_mixed`, which its planned candidate runs. Tunes on the first `mixed.samples` of
validate.data; the validate stage then judges every engine on the samples after them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from optcli.artifacts import Artifact
from optcli.backends import EngineContext, create_engine
from optcli.cache import make_key
from optcli.chain import reraise_interrupt
from optcli.errors import UserInputError
from optcli.metrics import ClassAccumulator, OutputAccumulator, summarize
from optcli.onnx_io import load_model, save_model
from optcli.quantization import QUANTIZERS
from optcli.quantization.calibrator import CalibrationCache
from optcli.quantization.mixed_precision import (
    keep_float,
    margin,
    rank_layers,
    sample_cosines,
    search,
    worst_samples,
)
from optcli.quantization.nncf_onnx import target_settings
from optcli.quantization.selectors import module_path
from optcli.quantization.summary import artifact_precision
from optcli.stages.cached import restore, store
from optcli.stages.context import StageContext
from optcli.stages.data import DataStream
from optcli.stages.recover import PATCH_FILE, HeldOut, TuningData, candidate_groups, held_out
from optcli.validate import EngineValidation

NAME = "quantized-mixed.onnx"


@dataclass
class Mixed:
    artifact: Artifact | None  # None: not needed (INT8 passes), or no passing set found in budget
    details: dict[str, Any]
    tuning_samples: int = 0  # leading validate.data samples the search tuned on (validate skips them)
    kept_float: dict[str, list[str]] = field(default_factory=dict)  # modules / nodes


@dataclass
class MixedInputs:
    """What the search needs besides the stage context: the INT8 artifact and the engine it runs
    on (the planned mixed candidate's config), the float model, the gates and the data."""

    settings: Any  # QuantizationSettings of the quantizer that made `int8`
    int8: Artifact
    float_model: Artifact
    engine: Any  # EngineConfig of the mixed candidate (its float layers' precision included)
    gates: dict[str, str]  # validate.gates
    own_gates: dict[str, str]
    calibration: DataStream
    tuning: TuningData
    output_names: list[str]
    sizes: dict[str, int]


def mixed_stage(ctx: StageContext, inputs: MixedInputs, hardware: dict[str, Any]) -> Mixed:
    mixed = inputs.settings.mixed
    key = make_key(
        "quantize-mixed",
        {
            "settings": inputs.settings.model_dump(mode="json", exclude={"accuracy"}),
            "int8": inputs.int8.sha256,
            "float": inputs.float_model.sha256,
            "engine": inputs.engine.model_dump(mode="json", exclude={"name", "gates"}),
            "gates": [inputs.gates, inputs.own_gates],
            "calibration": inputs.calibration.fingerprint(),
            "tuning": [inputs.tuning.validation.fingerprint(), inputs.tuning.judged_samples],
            "hardware": hardware,  # trials are judged on this machine's kernels
            "versions": ctx.versions,
        },
    )
    entry = ctx.cache.get("quantize-mixed", key)
    with ctx.stage("quantize:mixed") as record:
        if entry is not None:
            details = entry.meta["details"]
            path = restore(ctx, entry, NAME) if NAME in entry.files else None
            if PATCH_FILE in entry.files:
                restore(ctx, entry, PATCH_FILE)
        else:
            work = Path(tempfile.mkdtemp(prefix=".mixed-", dir=ctx.workspace.root))
            try:
                details = _search(ctx, inputs, work / NAME, mixed)
                path = _commit(ctx, work / NAME) if (work / NAME).exists() else None
            except Exception as exc:  # an optional candidate: its failure is reported, not the run's
                reraise_interrupt(exc)
                ctx.warn(f"mixed precision search failed, no mixed candidate: {type(exc).__name__}: {exc}")
                details, path = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}, None
            finally:
                shutil.rmtree(work, ignore_errors=True)
        artifact = None
        if path is not None:
            share = artifact_precision(path, "int8", inputs.sizes)
            artifact = Artifact(
                "quantized_mixed", path, "onnx", share.precision, "quantize-mixed", key, share.to_dict()
            )
        if entry is None and details["status"] != "failed":  # failures are never cached
            _store(ctx, key, artifact, details)
        record.details = {**details, "cached": entry is not None, "cache_key": key}
        if artifact is not None:
            record.artifact = str(artifact.path)
    tuned = mixed.samples if details.get("status") in ("found", "not found") else 0
    return Mixed(artifact, details, tuned, details.get("kept_float", {}))


def _commit(ctx: StageContext, found: Path) -> Path:
    with ctx.workspace.staged(NAME) as tmp:
        data = found.parent / (found.name + ".data")
        if data.exists():
            data.replace(tmp.parent / data.name)
        found.replace(tmp)
    return ctx.workspace.path(NAME)


def _store(ctx: StageContext, key: str, artifact: Artifact | None, details: dict[str, Any]) -> None:
    patch = ctx.workspace.path(PATCH_FILE)
    extra = {PATCH_FILE: patch} if details.get("recipe_patch") and patch.exists() else {}
    if artifact is not None:
        store(ctx, "quantize-mixed", key, artifact, {"details": details}, **extra)
    else:
        ctx.cache.put("quantize-mixed", key, extra, {"details": details})


def _search(ctx: StageContext, inputs: MixedInputs, dst: Path, mixed) -> dict[str, Any]:
    started = time.perf_counter()
    deadline = started + mixed.time_budget_s
    try:
        data = held_out(inputs.tuning, mixed.samples)
    except UserInputError as exc:  # an optional candidate: too little data skips it, never fails the run
        ctx.warn(f"mixed precision skipped: {exc.message}")
        return {"status": "skipped", "reason": exc.message}
    label = inputs.engine.name
    evaluate = _Evaluator(inputs, data, dst.parent / ".mixed-trial.onnx")
    initial, failed = evaluate.margin(inputs.int8.path)
    int8_cosines = evaluate.sample_cosines
    details: dict[str, Any] = {"engine": label, "int8_artifact": inputs.int8.name, "initial_failed": failed}
    # Where the stage's time goes: the tuning data's PyTorch reference and INT8's first judgement,
    # the layer ranking, the trials, and the final artifact (the quantizer's re-quantization).
    steps = details["step_seconds"] = {"initial": round(time.perf_counter() - started, 2)}
    if initial >= 0:
        return {
            **details,
            "status": "not needed",
            "reason": "the INT8 candidate passes on the tuning samples",
        }
    names = inputs.calibration.input_names
    ranked = worst_samples(data.batches, int8_cosines, mixed.diagnose_samples)
    budget = max(0.5 * (deadline - time.perf_counter()), 1.0)  # the ranking may use half of what is left
    layers = rank_layers(inputs.float_model.path, inputs.int8.path, ranked, names, budget)
    groups = candidate_groups(inputs.float_model.path, layers)
    ranking_s = round(time.perf_counter() - started, 2)
    steps["ranking"] = round(ranking_s - steps["initial"], 2)
    result = search(
        groups,
        lambda nodes: evaluate.with_float(nodes)[0],
        initial_margin=initial,
        max_trials=mixed.max_trials,
        deadline=deadline,
    )
    steps["trials"] = round(time.perf_counter() - started - ranking_s, 2)
    details.update(
        {
            "search": result.to_dict(),
            "ranked_layers": [layer.node for layer in layers[:20]],
            "ranking_s": ranking_s,
            "ranked_on": f"the {mixed.diagnose_samples} tuning samples with the lowest INT8 output cosine",
            "samples": mixed.samples,
            "tuned_on": f"the first {mixed.samples} samples of validate.data (the validate stage skips them)",
        }
    )
    if not result.passed:
        details.update(status="not found", seconds=round(time.perf_counter() - started, 2))
        ctx.warn(f"mixed precision: no layer set within the budget makes {label} pass ({result.stopped_by})")
        return details
    finish_started = time.perf_counter()
    details.update(_finish(ctx, inputs, evaluate, result.kept_float, dst, deadline))
    steps["final_artifact"] = round(time.perf_counter() - finish_started, 2)
    details.update(status="found", seconds=round(time.perf_counter() - started, 2))
    return details


def _finish(
    ctx, inputs: MixedInputs, evaluate, kept: list[str], dst: Path, deadline: float
) -> dict[str, Any]:
    """The quantizer's own exclusions for the kept set (NNCF ignored scope, ORT nodes_to_exclude),
    used when it passes too (it re-calibrates around the float layers); else the edited graph."""
    edited_margin, _ = evaluate.with_float(kept, keep_at=dst)
    nodes = {n.name: n for n in load_model(inputs.float_model.path, load_external_data=False).graph.node}
    kept = [n for n in kept if n in nodes]  # a graph input heads its consumers' group: not a node
    method = "edited Q/DQ graph"
    requantized = None
    if time.perf_counter() < deadline:
        settings = inputs.settings.model_copy(deep=True)
        settings.exclude.nodes = [*settings.exclude.nodes, *kept]
        trial = dst.parent / ".mixed-requantized.onnx"
        QUANTIZERS[settings.quantizer].quantize(
            inputs.float_model.path,
            trial,
            settings,
            inputs.calibration.batches(),
            inputs.calibration.input_names,
            cache=_statistics(ctx, inputs),
        )
        requantized, _ = evaluate.margin(trial)
        if requantized >= 0:
            trial.replace(dst)
            method = f"{settings.quantizer} re-quantized with the layers excluded"
        else:
            trial.unlink(missing_ok=True)
    modules = sorted({module_path(nodes[n]) for n in kept if n in nodes and module_path(nodes[n])})
    bare = sorted(n for n in kept if not module_path(nodes[n]))
    patch = {"quantization": {"exclude": {k: v for k, v in (("modules", modules), ("nodes", bare)) if v}}}
    _write_patch(ctx, patch, inputs.engine.name, requantized)
    return {
        "kept_float": {"modules": modules, "nodes": bare},
        "kept_float_nodes": kept,
        "artifact_from": method,
        "margins": {"edited": edited_margin, "requantized": requantized},
        "recipe_patch": patch,
    }


def _statistics(ctx: StageContext, inputs: MixedInputs) -> CalibrationCache:
    """The quantize stage's activation statistics (same model, same data): ORT re-quantizes from them."""
    folder = ctx.cache.root / "statistics" if ctx.cache.enabled else ctx.workspace.path("calibration")
    enabled = inputs.settings.calibration.cache
    return CalibrationCache(folder if enabled else None, inputs.calibration.fingerprint())


def _write_patch(ctx: StageContext, patch: dict[str, Any], label: str, requantized: float | None) -> None:
    """recipe-patch.yaml: merged with accuracy recovery's exclusions when that wrote one too. Its
    comment says whether the quantizer, given just these exclusions, passed (`requantized`: that
    margin, None when the budget left no time to try)."""
    if requantized is None:
        outcome = "# Not checked: the search's time budget ran out before re-quantizing with them.\n"
    elif requantized >= 0:
        outcome = "# Re-quantized with these exclusions, it passed on the tuning samples too.\n"
    else:
        outcome = (
            f"# Re-quantized with only these exclusions, it MISSED the gates on the tuning samples (margin\n"
            f"# {requantized:.4g}): the candidate this run built is the edited Q/DQ graph (layers kept in\n"
            "# float after calibration), so merging this alone may not pass.\n"
        )
    path = ctx.workspace.path(PATCH_FILE)
    merged = yaml.safe_load(path.read_text()) if path.exists() else None
    exclude = ((merged or {}).get("quantization") or {}).get("exclude") or {}
    for kind, values in patch["quantization"]["exclude"].items():
        exclude[kind] = sorted({*exclude.get(kind, []), *values})
    ctx.workspace.write_text(
        PATCH_FILE,
        f"# Merge into the recipe to keep these layers in floating point ({label}: the fewest layers\n"
        "# that made the fastest INT8 engine pass the validate gates on the tuning samples).\n"
        + outcome
        + yaml.safe_dump({"quantization": {"exclude": exclude}}, sort_keys=False),
    )


class _Evaluator:
    """Runs a model on the candidate's engine over the tuning samples; returns its gate margin
    (and keeps the last model's per-sample output cosines)."""

    def __init__(self, inputs: MixedInputs, data: HeldOut, scratch: Path) -> None:
        self.inputs, self.data, self.scratch = inputs, data, scratch
        self.qdq = load_model(inputs.int8.path)
        self.float_model = load_model(inputs.float_model.path)
        self.sample_cosines: list[float] = []

    def with_float(self, nodes: list[str], keep_at: Path | None = None) -> tuple[float, list[str]]:
        path = keep_at or self.scratch
        save_model(keep_float(self.qdq, self.float_model, set(nodes)), path)
        try:
            return self.margin(path)
        finally:
            if keep_at is None:
                for file in path.parent.glob(path.name + "*"):
                    file.unlink()

    def margin(self, path: Path) -> tuple[float, list[str]]:
        inputs = self.inputs
        config = inputs.engine.model_copy(update={"artifact": "trial"})
        context = EngineContext(
            artifacts={"trial": path},
            precisions={"trial": "int8"},
            torch_model=lambda: None,
            input_names=inputs.calibration.input_names,
            output_names=inputs.output_names,
        )
        outputs = [OutputAccumulator() for _ in inputs.output_names]
        classes = ClassAccumulator()
        index = inputs.tuning.class_output
        self.sample_cosines = []
        with create_engine(config, context) as engine:
            for batch, reference in zip(self.data.batches, self.data.reference):
                produced = engine.run(batch)
                self.sample_cosines += sample_cosines(reference, produced)
                for acc, ref, out in zip(outputs, reference, produced):
                    acc.update(ref, out)
                if index < len(reference) and reference[index].ndim == 2 and reference[index].shape[1] > 1:
                    classes.update(reference[index], produced[index], batch.get(self.data.labels_key))
        per_output = {name: acc.result() for name, acc in zip(inputs.output_names, outputs)}
        result = EngineValidation(
            engine=config.name or "",
            precision="int8",
            outputs=per_output,
            summary=summarize(per_output),
            classification=classes.result() if classes.samples else {},
        )
        return margin(result, inputs.gates, inputs.own_gates)


def mixed_inputs(
    recipe, plan, artifacts: dict[str, Artifact], calibration, tuning, output_names, sizes, source: str
):
    """The search's inputs from the plan: its mixed candidate, the INT8 artifact `source` it starts
    from (stages/mixed_source.py), the float model both quantizers read."""
    engine = next(e for e in plan.engines if e.artifact == "quantized_mixed")
    settings = recipe.quantization
    if source == "quantized_nncf":  # the settings nncf_stage quantized with
        settings = target_settings(settings)
    float_model = artifacts.get("optimized") or artifacts["exported"]
    return MixedInputs(
        settings=settings,
        int8=artifacts[source],
        float_model=float_model,
        engine=engine.config,
        gates=dict(recipe.validate_.gates),
        own_gates={},
        calibration=calibration,
        tuning=tuning,
        output_names=output_names,
        sizes=sizes,
    )
