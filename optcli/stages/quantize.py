"""The quantization stage: stream calibration data into the chosen quantizer (or convert to FP16)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optcli.calibration import SourceContext, is_synthetic, sample_digests, stream
from optcli.passes import PASSES
from optcli.quantization import QUANTIZERS
from optcli.stages.context import Run
from optcli.stages.model import compare_with_reference


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
        details = QUANTIZERS[settings.quantizer].quantize(source, dst, settings, tracked(), names)
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
