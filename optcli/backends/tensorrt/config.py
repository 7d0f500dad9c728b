"""The `build:` entry for TensorRT. Precision is not an option here: it comes from the ONNX graph."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from optcli.backends.base import OnnxEngineConfig
from optcli.specs import DimRange

HardwareCompatibility = Literal["none", "ampere_plus"]


class TensorRTConfig(OnnxEngineConfig):
    engine: Literal["tensorrt"] = "tensorrt"
    workspace_mb: int | None = Field(
        None,
        ge=1,
        description="Builder workspace memory pool limit in MiB. Default: TensorRT's (the device memory).",
    )
    optimization_level: int = Field(
        3,
        ge=0,
        le=5,
        description="Builder optimization level 0..5: higher searches more tactics (slower build, maybe "
        "faster engine). 0 ignores the timing cache.",
    )
    timing_cache: Path | None = Field(
        None,
        description="Timing cache file, read before and written back after each build (shortens rebuilds "
        "on the same GPU and TensorRT version). Relative paths are resolved against the run folder. "
        "Default: trt-timing.cache next to the artifact.",
    )
    hardware_compatibility: HardwareCompatibility = Field(
        "none",
        description="'ampere_plus' builds a plan that runs on any Ampere or newer GPU (slower); 'none' "
        "builds for this GPU only.",
    )
    cuda_graph: bool = Field(
        False,
        description="Capture one inference as a CUDA graph for benchmarks (fewer launch costs; "
        "comparable with trtexec --useCudaGraph). Validation always runs without it.",
    )
    legacy_precision_flags: bool = Field(
        False,
        description="TensorRT 10.x only: build weakly typed with FP16 (+INT8/FP8 for quantized artifacts) "
        "builder flags, letting TensorRT pick layer precisions. Refused on TensorRT 11, which is "
        "always strongly typed.",
    )
    profile: dict[str, DimRange] | None = Field(
        None,
        description="Optimization-profile overrides of model.dims for this engine only, e.g. "
        "{batch: {min: 1, opt: 8, max: 32}}. Default: the ranges in model.dims.",
    )
