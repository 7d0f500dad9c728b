"""The quantization stage: stream calibration data into the chosen quantizer (or convert to FP16)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from optcli.calibration import SourceContext, is_synthetic, sample_digests, stream
from optcli.passes import PASSES
from optcli.quantization import QUANTIZERS, CalibrationSettings
from optcli.quantization.calibrator import CalibrationCache
from optcli.quantization.summary import QUANTIZED, ArtifactPrecision, artifact_precision
from optcli.stages.context import Run
from optcli.stages.recover import check_quantized_share, diagnose_stage_model, recover_accuracy
from optcli.stages.target import wants_nncf_artifact


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
        if settings.accuracy is not None and settings.precision in ("int8", "fp8"):
            record.details["recovery"] = recover_accuracy(run, source, tmp, record.details)
        if settings.diagnose and settings.precision in ("int8", "fp8"):
            float_model = Path(record.details.get("quantizer_input") or source)
            layers = diagnose_stage_model(run, float_model, tmp, 2)
            record.details["diagnosis"] = [layer.to_dict() for layer in layers]
        share = artifact_precision(tmp, settings.precision, run.resolver.sizes(batch_size=1))
        record.details["precision_by_op"] = share.by_op
        record.details["precision"] = share.to_dict()
        run.report.quantization = {
            key: record.details[key]
            for key in ("precision_by_op", "recovery", "diagnosis")
            if key in record.details
        }
        run.report.quantization["artifacts"] = {"quantized": share.to_dict()}
        if "recovery" in record.details:
            check_quantized_share(run, share, len(record.details["recovery"]["excluded"]))
        record.artifact = str(run.workspace.path("quantized.onnx"))
    run.artifacts["quantized"] = run.workspace.path("quantized.onnx")
    # What the artifact runs in, not what the recipe asked for: engine labels and reports follow it.
    run.precisions["quantized"] = share.precision if share.requested in QUANTIZED else share.requested
    warn_if_not_quantized(run, share)
    if wants_nncf_artifact(run):
        nncf_stage(run, source)


def nncf_stage(run: Run, source: Path) -> None:
    """`target: cpu` with OpenVINO: a second INT8 artifact, placed by NNCF the way OpenVINO runs fastest."""
    settings = run.recipe.quantization.model_copy(deep=True, update={"quantizer": "nncf", "accuracy": None})
    # NNCF's own default estimator: the recipe's method was chosen for its own quantizer (and NNCF
    # lacks mse/distribution).
    settings.calibration.method = "auto"
    calibration = settings.calibration
    ctx = SourceContext(run.resolver, run.recipe.base_dir, "quantization.calibration.data")
    names = [spec.name for spec in run.recipe.model.inputs]
    with run.stage("quantize:int8-nncf") as record, run.workspace.staged("quantized-nncf.onnx") as tmp:
        batches = stream(
            calibration.data, ctx, batch_size=calibration.batch_size, samples=calibration.samples
        )
        record.details = QUANTIZERS["nncf"].quantize(source, tmp, settings, batches, names)
        share = artifact_precision(tmp, "int8", run.resolver.sizes(batch_size=1))
        record.details["precision"] = share.to_dict()
        record.artifact = str(run.workspace.path("quantized-nncf.onnx"))
    run.artifacts["quantized_nncf"] = run.workspace.path("quantized-nncf.onnx")
    run.precisions["quantized_nncf"] = share.precision
    run.report.quantization.setdefault("artifacts", {})["quantized_nncf"] = share.to_dict()
    warn_if_not_quantized(run, share, "quantized-nncf.onnx")


def warn_if_not_quantized(run: Run, share: ArtifactPrecision, name: str = "quantized.onnx") -> None:
    if share.requested in ("int8", "fp8") and share.quantized_share == 0:
        run.report.warnings.append(
            f"{name} has no {share.requested} compute op (every Conv/MatMul/Gemm runs in {share.precision}): "
            f"it is reported as {share.precision}, not {share.requested}"
        )


def calibrate_and_quantize(run: Run, source: Path, dst: Path) -> dict[str, Any]:
    settings = run.recipe.quantization
    calibration = settings.calibration
    field = "quantization.calibration.data"
    ctx = SourceContext(run.resolver, run.recipe.base_dir, field, warn=run.report.warnings.append)
    digests = run.calibration_digests
    names = [spec.name for spec in run.recipe.model.inputs]
    progress = run.ui.progress("calibrating", total=calibration.samples)
    data_key = calibration_data_key(calibration, ctx)
    cache_dir = run.workspace.root / "calibration" if calibration.cache else None

    def tracked() -> Iterator[dict]:
        for batch in stream(
            calibration.data, ctx, batch_size=calibration.batch_size, samples=calibration.samples
        ):
            digests.update(sample_digests(batch, names))
            progress.advance(len(batch[names[0]]))
            yield batch

    try:
        details = QUANTIZERS[settings.quantizer].quantize(
            source, dst, settings, tracked(), names, cache=CalibrationCache(cache_dir, data_key)
        )
    finally:
        progress.close()
    remember_digests(cache_dir, data_key, digests, reused=details.get("statistics_reused", False))
    details["calibration_key"] = data_key
    details["calibration_data"] = calibration.data.model_dump()
    details["synthetic_calibration"] = is_synthetic(calibration.data)
    if details["synthetic_calibration"]:
        run.report.warnings.append(
            "calibration used synthetic random data: it proves the pipeline works, not that the "
            "quantized model is accurate on real inputs"
        )
    run.report.warnings += [f"default applied: {note}" for note in details.get("defaults_applied", [])]
    if details["unmatched_exclude_patterns"]:
        run.report.warnings.append(
            f"quantization.exclude patterns matched no node: {details['unmatched_exclude_patterns']}"
        )
    run.report.provenance["calibration_data_sha256"] = hashlib.sha256(b"".join(sorted(digests))).hexdigest()[
        :16
    ]
    return details


def calibration_data_key(calibration: CalibrationSettings, ctx: SourceContext) -> str:
    """Fingerprint of what calibration reads: source settings, the input specs the data is checked
    and cast against, and the size and mtime of every file the source reads (data, images, a
    'file.py:fn' callable's code). The model's side of the key is calibrator.calibration_key."""
    from optcli.calibration import source_files

    parts = [
        json.dumps(calibration.data.model_dump(), sort_keys=True),
        str(calibration.samples),
        str(calibration.batch_size),
        json.dumps([spec.model_dump() for spec in ctx.resolver.inputs], sort_keys=True),
    ]
    for path in source_files(calibration.data, ctx):
        stat = path.stat()
        parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def remember_digests(cache_dir: Path | None, data_key: str, digests: set[bytes], *, reused: bool) -> None:
    """Keep sample hashes beside cached statistics: a reused cache reads one batch, yet validation
    must still know every calibration sample to check that the two sets are disjoint."""
    if cache_dir is None:
        return
    path = cache_dir / f"calibration-digests-{data_key}.npy"
    if reused and path.exists():
        digests.update(bytes(d) for d in np.load(path))
    elif digests:
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(path, np.array(sorted(digests), dtype="S12"))
