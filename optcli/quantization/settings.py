"""The recipe's `quantization:` section."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from optcli.calibration import DataSource
from optcli.calibration.synthetic import SyntheticSource
from optcli.errors import UserInputError
from optcli.quantization.embeddings import EmbeddingSettings
from optcli.quantization.quantizers import DEFAULT_QUANTIZER, QUANTIZERS
from optcli.quantization.registry import CalibrationMethod
from optcli.strict import StrictModel

Precision = Literal["fp32", "fp16", "int8", "fp8"]
# Built from the registry: the JSON Schema and validation errors list exactly the registered quantizers.
QuantizerName = Literal[tuple(QUANTIZERS)]  # type: ignore[valid-type]


def _quantizer_help() -> str:
    def entry(q) -> str:
        extra = f" Optional package: {', '.join(p.name for p in q.requires)}." if q.requires else ""
        return f"{q.name} ({', '.join(sorted(q.precisions))}): {q.summary}.{extra}"

    entries = " ".join(entry(q) for q in QUANTIZERS.values())
    return f"Which library inserts Q/DQ nodes (default {DEFAULT_QUANTIZER}). {entries}"


class CalibrationSettings(StrictModel):
    """Data and method used to choose quantization ranges."""

    data: DataSource = Field(
        default_factory=SyntheticSource,
        description="Where calibration batches come from: {type: files | callable | synthetic}. "
        "Synthetic data proves the plumbing only; the report marks it.",
    )
    samples: int = Field(128, ge=1, description="How many samples to calibrate on (streamed).")
    batch_size: int = Field(16, ge=1, description="Samples per calibration batch.")
    method: CalibrationMethod = Field(
        "auto",
        description="Range estimation: minmax, percentile, entropy (KL divergence) or mse (least squared "
        "error), all derived from one pass of cached statistics; for fp8 also 'distribution' (ORT's "
        "Gaussian fit, which clips ReLU tails). auto = minmax.",
    )
    percentile: float = Field(99.999, gt=90, le=100, description="Percentile for method: percentile.")
    cache: bool = Field(
        True,
        description="Keep activation statistics in <run folder>/calibration/ and reuse them when the model "
        "and the data settings (and, for files, their sizes and mtimes) match; another method then "
        "needs no pass over the data. Turn off when a callable source changes behind the same settings.",
    )


class ExcludeSettings(StrictModel):
    """Nodes kept in floating point."""

    op_types: list[str] = Field(
        default_factory=list, description="ONNX op types never quantized, e.g. [Softmax]."
    )
    nodes: list[str] = Field(
        default_factory=list,
        description="ONNX node names or globs ('*/attention/*') never quantized.",
    )
    modules: list[str] = Field(
        default_factory=list,
        description="PyTorch module paths or globs as in named_modules() ('layer4.*', '*.attention.*'): "
        "every node exported from them stays in floating point. Survives re-export.",
    )


class AccuracyTarget(StrictModel):
    """Automatic recovery: keep the most damaging layers in FP32 until the metric is within max_drop."""

    metric: Literal["accuracy", "top1_agreement", "cosine"] = Field(
        "top1_agreement",
        description="accuracy (needs labels in validate.data), top1_agreement or cosine vs FP32 baseline.",
    )
    max_drop: float = Field(
        0.01, ge=0, description="Allowed drop: accuracy vs the baseline's, or 1 - metric."
    )
    max_trials: int = Field(8, ge=1, description="At most this many re-quantize + re-validate trials.")
    time_budget_s: float = Field(600, gt=0, description="Stop starting trials after this many seconds.")
    samples: int = Field(
        256,
        ge=1,
        description="Tuning samples: the first this many of validate.data rank layers and judge each trial; "
        "the validate stage then judges on the validate.samples after them (held out from tuning).",
    )
    diagnose_batches: int = Field(
        2, ge=1, description="Batches (of the tuning samples) used to rank layers by the error they add."
    )
    min_quantized_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Fail (exit 1) when recovery leaves less than this share of the compute (MACs) "
        "quantized: a model with most layers back in FP32 is no longer an INT8/FP8 model.",
    )


class MixedPrecisionSettings(StrictModel):
    """`target: cpu`: when the fastest INT8 candidate misses the validate gates, search the fewest
    layers to keep in floating point (BF16 where the CPU has it, else FP32) on that engine."""

    enabled: bool = Field(True, description="Add the mixed-precision candidate when INT8 misses the gates.")
    max_trials: int = Field(
        12, ge=1, description="At most this many trial models, each validated on the engine."
    )
    time_budget_s: float = Field(
        120, gt=0, description="Stop the search (layer ranking, trials, final re-quantization) after this."
    )
    samples: int = Field(
        32,
        ge=1,
        description="Tuning samples: the first this many of validate.data rank layers and judge the trials; "
        "the validate stage judges every engine on the validate.samples after them.",
    )
    # 2, not 4: on ResNet-50 (this project's 2-core AVX2 EPYC) the ranking took 34.8 s instead of
    # 46.6 s, with the same four top-ranked layers and the same kept set; the search's trials judge
    # every set on all tuning samples either way, so a coarser ranking can cost trials, never a
    # wrong verdict.
    diagnose_samples: int = Field(
        2,
        ge=1,
        description="The layer ranking runs on this many tuning samples: those the INT8 candidate "
        "gets most wrong (lowest output cosine).",
    )


class QuantizationSettings(StrictModel):
    """Post-training quantization (static Q/DQ) or FP16 conversion of the optimized ONNX model."""

    precision: Precision = Field(
        "int8",
        description="fp32 (skip), fp16 (convert), int8 or fp8 (E4M3, static Q/DQ with calibration).",
    )
    quantizer: QuantizerName = Field(DEFAULT_QUANTIZER, description=_quantizer_help())
    per_channel: bool = Field(True, description="Per-output-channel weight scales (better accuracy).")
    symmetric_activations: bool = Field(
        False,
        description="Signed, zero-centred activation ranges. TensorRT needs it; ORT on x86 CPUs is "
        "fastest with unsigned (asymmetric) activations, the default.",
    )
    op_types: list[str] | None = Field(
        None,
        description="Only quantize these op types (e.g. [Conv, MatMul, Gemm]). Default: all supported.",
    )
    exclude: ExcludeSettings = Field(default_factory=ExcludeSettings)
    transformer_defaults: bool = Field(
        True,
        description="When the graph has transformer blocks and op_types is not set, quantize only the "
        "matrix products (MatMul/Gemm) and keep LayerNorm, Softmax and residual Adds in floating point: "
        "quantizing those with one static scale wrecks transformer accuracy; the report notes it.",
    )
    preprocess: bool = Field(
        True, description="Run ORT's quantization pre-processing (shape inference, fusions)."
    )
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)
    accuracy: AccuracyTarget | None = Field(
        None, description="Recover accuracy automatically when the quantized model misses this target."
    )
    diagnose: bool = Field(False, description="Add the per-layer error ranking to the report.")
    embeddings: EmbeddingSettings | None = Field(
        None,
        description="Also quantize embedding tables (Gather on large float initializers) row-wise to 8 "
        "or 4 bits, weight-only, chosen per table by size; null: tables are left to the quantizer. "
        "ONNX Runtime only (com.microsoft.GatherBlockQuantized).",
    )
    mixed: MixedPrecisionSettings = Field(default_factory=MixedPrecisionSettings)

    @model_validator(mode="after")
    def _method_fits_precision(self) -> QuantizationSettings:
        if self.precision == "int8" and self.calibration.method == "distribution":
            raise ValueError(
                "calibration.method 'distribution' is for fp8; use minmax, entropy or percentile"
            )
        return self

    @model_validator(mode="after")
    def _quantizer_supports(self) -> QuantizationSettings:
        # Only int8/fp8 go through the quantizer: fp16 is a graph pass, fp32 skips the stage.
        if self.precision in ("int8", "fp8"):
            try:
                QUANTIZERS[self.quantizer].check(self)
            except UserInputError as exc:
                raise ValueError(f"{exc.message}; {exc.hint}" if exc.hint else exc.message) from None
        return self

    @model_validator(mode="after")
    def _embeddings_need_ort(self) -> QuantizationSettings:
        if self.embeddings is not None and (self.quantizer != "onnxruntime" or self.precision != "int8"):
            raise ValueError(
                "embeddings: row-wise table quantization runs with quantizer: onnxruntime and precision: "
                f"int8 (got {self.quantizer}, {self.precision})"
            )
        return self

    def resolved_method(self) -> str:
        return "minmax" if self.calibration.method == "auto" else self.calibration.method
