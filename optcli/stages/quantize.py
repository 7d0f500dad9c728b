"""The quantization stage: calibrate and quantize (or convert to FP16) one float artifact.

Inputs are explicit: the `quantization:` section, the float artifact, the calibration stream and,
for accuracy recovery or diagnosis, the tuning data. The result is cached by those inputs'
digests: a rerun with the same inputs copies `quantized.onnx` from the cache, and one with another
calibration method reuses the cached activation statistics (only ranges and Q/DQ are redone).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optcli.artifacts import Artifact
from optcli.cache import make_key
from optcli.gates import GateResult
from optcli.passes import PASSES
from optcli.quantization import QUANTIZERS
from optcli.quantization.calibrator import CalibrationCache
from optcli.quantization.embeddings import quantize_embeddings, with_model_bytes
from optcli.quantization.nncf_onnx import target_settings
from optcli.quantization.summary import QUANTIZED, ArtifactPrecision, artifact_precision
from optcli.stages.cached import restore, store
from optcli.stages.context import StageContext
from optcli.stages.data import DataStream
from optcli.stages.recover import (
    PATCH_FILE,
    TuningData,
    diagnose_stage_model,
    quantized_share_gate,
    recover_accuracy,
)

# Gate thresholds: evaluated after the stage, so changing them reuses the quantized model; the
# mixed-precision search is a stage of its own (stages/mixed.py).
GATE_FIELDS = {"accuracy": {"min_quantized_share"}, "mixed": True}


@dataclass
class Quantized:
    artifact: Artifact
    report: dict[str, Any]  # the report's `quantization` section
    gates: list[GateResult] = field(default_factory=list)
    tuning_samples: int = 0  # leading validate.data samples recovery tuned on (validate skips them)
    calibration_digests: set[bytes] = field(default_factory=set)


def quantize_stage(
    ctx: StageContext,
    settings,
    source: Artifact,
    calibration: DataStream,
    tuning: TuningData | None,
    sizes: dict[str, int],
) -> Quantized:
    uses_validation = settings.precision in ("int8", "fp8") and (settings.accuracy or settings.diagnose)
    key = make_key(
        "quantize",
        {
            "settings": settings.model_dump(mode="json", exclude=GATE_FIELDS),
            "input": source.sha256,
            "calibration": calibration.fingerprint(),
            "tuning": _tuning_part(tuning) if uses_validation else None,
            "versions": ctx.versions,
        },
    )
    entry = ctx.cache.get("quantize", key)
    with ctx.stage(f"quantize:{settings.precision}") as record:
        if entry is not None:
            path = restore(ctx, entry, "quantized.onnx")
            if PATCH_FILE in entry.files:
                restore(ctx, entry, PATCH_FILE)
            details = entry.meta["details"]
            calibration.digests.update(bytes.fromhex(d) for d in entry.meta["calibration_digests"])
            for warning in details.get("warnings", []):
                ctx.warn(warning)
        else:
            before = len(ctx.warnings)
            with ctx.workspace.staged("quantized.onnx") as tmp:
                details = _quantize(ctx, settings, source, tmp, calibration, tuning)
            path = ctx.workspace.path("quantized.onnx")
            details["warnings"] = ctx.warnings[before:]
        # Counting MACs means shape inference over the whole graph: a cached artifact brings its count.
        cached_share = entry.meta.get("share") if entry is not None else None
        share = (
            ArtifactPrecision(**cached_share)
            if cached_share
            else artifact_precision(path, settings.precision, sizes)
        )
        # What the artifact runs in, not what the recipe asked for: engine labels and reports follow it.
        precision = share.precision if share.requested in QUANTIZED else share.requested
        artifact = Artifact(
            "quantized", path, "onnx", precision, "quantize", cache_key=key, precision_detail=share.to_dict()
        )
        if entry is None:
            _store(ctx, key, artifact, details, calibration, share)
        record.artifact = str(path)
        record.details = {
            **details,
            "precision": share.to_dict(),
            "cached": entry is not None,
            "cache_key": key,
        }
    report = {
        k: details[k] for k in ("precision_by_op", "recovery", "diagnosis", "embeddings") if k in details
    }
    report["precision_by_op"] = share.by_op
    report["artifacts"] = {"quantized": share.to_dict()}
    gates = list(_recovery_gates(details))
    if "recovery" in details:
        gates.append(quantized_share_gate(settings, share, len(details["recovery"]["excluded"])))
    warn_if_not_quantized(ctx, share)
    tuned = int(details.get("recovery", {}).get("tuning_samples", 0))
    return Quantized(artifact, report, gates, tuned, set(calibration.digests))


def _tuning_part(tuning: TuningData | None) -> dict[str, Any] | None:
    if tuning is None:
        return None
    return {
        "data": tuning.validation.fingerprint(),
        "judged": tuning.judged_samples,
        "class": tuning.class_output,
    }


def _quantize(
    ctx: StageContext, settings, source: Artifact, dst: Path, calibration: DataStream, tuning
) -> dict:
    if settings.precision == "fp16":
        fp16 = PASSES["fp16"]
        return {"summary": fp16.apply(source.path, dst, fp16.options())}
    statistics = ctx.cache.root / "statistics" if ctx.cache.enabled else ctx.workspace.path("calibration")
    cache = CalibrationCache(statistics if settings.calibration.cache else None, calibration.fingerprint())
    float_path, tables = source.path, None
    if settings.embeddings is not None:  # tables first: calibration and recovery see what will run
        float_path = dst.with_name("tables-quantized.onnx")
        tables = quantize_embeddings(source.path, float_path, settings.embeddings)
    details = calibrate_and_quantize(ctx, settings, float_path, dst, calibration, cache)
    if details.get("statistics_reused"):
        # Cached statistics needed one batch; validation still needs every calibration sample's
        # digest to prove the two sets disjoint, and reading the data is cheap next to running it.
        for _ in calibration.batches():
            pass
    if settings.accuracy is not None:
        if tuning is None:
            raise _needs_validation("quantization.accuracy")
        recovery = recover_accuracy(ctx, settings, float_path, dst, details, calibration, tuning, cache)
        details["recovery"] = recovery.details
        details["recovery_gates"] = [gate.to_dict() for gate in recovery.gates]
    if settings.diagnose:
        if tuning is None:
            raise _needs_validation("quantization.diagnose")
        float_model = Path(details.get("quantizer_input") or float_path)
        layers = diagnose_stage_model(tuning.validation, float_model, dst, 2)
        details["diagnosis"] = [layer.to_dict() for layer in layers]
    if tables is not None:
        details["embeddings"] = with_model_bytes(tables, source.path, dst)
    return details


def _needs_validation(field: str):
    from optcli.errors import UserInputError

    return UserInputError(f"{field}: needs validation data (validate.enabled with validate.data)")


def _store(
    ctx: StageContext, key: str, artifact: Artifact, details: dict, calibration: DataStream, share
) -> None:
    meta = {
        "share": dataclasses.asdict(share),
        "details": details,
        "calibration_digests": sorted(d.hex() for d in calibration.digests),
    }
    patch = ctx.workspace.path(PATCH_FILE)
    extra = {PATCH_FILE: patch} if "recovery" in details and details["recovery"].get("recipe_patch") else {}
    store(ctx, "quantize", key, artifact, meta, **extra)


def _recovery_gates(details: dict) -> list[GateResult]:
    return [GateResult.from_dict(gate) for gate in details.get("recovery_gates", [])]


def nncf_stage(
    ctx: StageContext, settings, source: Artifact, calibration: DataStream, sizes: dict
) -> Artifact:
    """`target: cpu` with OpenVINO: a second INT8 artifact, placed by NNCF the way OpenVINO runs fastest."""
    settings = target_settings(settings)
    key = make_key(
        "quantize-nncf",
        {
            "settings": settings.model_dump(mode="json", exclude={"mixed"}),
            "input": source.sha256,
            "calibration": calibration.fingerprint(),
            "versions": ctx.versions,
        },
    )
    name = "quantized-nncf.onnx"
    entry = ctx.cache.get("quantize-nncf", key)
    with ctx.stage("quantize:int8-nncf") as record:
        if entry is not None:
            path, details = restore(ctx, entry, name), entry.meta["details"]
        else:
            with ctx.workspace.staged(name) as tmp:
                names = calibration.input_names
                details = QUANTIZERS["nncf"].quantize(
                    source.path, tmp, settings, calibration.batches(), names
                )
            path = ctx.workspace.path(name)
        share = artifact_precision(path, "int8", sizes)
        artifact = Artifact(
            "quantized_nncf", path, "onnx", share.precision, "quantize-nncf", key, share.to_dict()
        )
        if entry is None:
            store(ctx, "quantize-nncf", key, artifact, {"details": details})
        record.details = {
            **details,
            "precision": share.to_dict(),
            "cached": entry is not None,
            "cache_key": key,
        }
        record.artifact = str(path)
    warn_if_not_quantized(ctx, share, name)
    return artifact


def warn_if_not_quantized(ctx: StageContext, share: ArtifactPrecision, name: str = "quantized.onnx") -> None:
    if share.requested in ("int8", "fp8") and share.quantized_share == 0:
        ctx.warn(
            f"{name} has no {share.requested} compute op (every Conv/MatMul/Gemm runs in {share.precision}): "
            f"it is reported as {share.precision}, not {share.requested}"
        )


def calibrate_and_quantize(
    ctx: StageContext, settings, source: Path, dst: Path, calibration: DataStream, cache: CalibrationCache
) -> dict[str, Any]:
    progress = ctx.ui.progress("calibrating", total=settings.calibration.samples)
    try:
        details = QUANTIZERS[settings.quantizer].quantize(
            source,
            dst,
            settings,
            calibration.batches(on_batch=progress.advance),
            calibration.input_names,
            cache=cache,
        )
    finally:
        progress.close()
    details["calibration_key"] = calibration.fingerprint()
    details["calibration_data"] = settings.calibration.data.model_dump()
    details["synthetic_calibration"] = calibration.synthetic
    if calibration.synthetic:
        ctx.warn(
            "calibration used synthetic random data: it proves the pipeline works, not that the "
            "quantized model is accurate on real inputs"
        )
    for note in details.get("defaults_applied", []):
        ctx.warn(f"default applied: {note}")
    if details["unmatched_exclude_patterns"]:
        ctx.warn(f"quantization.exclude patterns matched no node: {details['unmatched_exclude_patterns']}")
    return details


def calibration_sha256(digests: set[bytes]) -> str:
    """One digest over the calibration samples read (order-free), for the report's provenance."""
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()
