"""CUDA and TensorRT execution provider options, as the strings ONNX Runtime's Python binding takes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from optcli.backends.onnxruntime_gpu.config import CPU, PROVIDERS, OnnxRuntimeGpuConfig
from optcli.backends.shapes import shape_range
from optcli.errors import UserInputError
from optcli.specs import DimRange, InputSpec


def _flag(value: bool) -> str:
    # The Python binding takes TensorRT booleans only as 'True'/'False' (or lower case): '1' throws, and
    # the session then falls back to CPU (onnxruntime_pybind_state.cc, "should be 'True' or 'False'").
    return "True" if value else "False"


def trt_profile_shapes(specs: list[InputSpec], dims: dict[str, DimRange]) -> dict[str, str]:
    """trt_profile_{min,opt,max}_shapes as 'name:AxBxC,name2:...' for every input with a named dim.

    ORT needs all three and every dynamic input in them (microsoft/onnxruntime PRs #15546, #17007;
    ParseProfileShapes in the TensorRT EP splits on ',' then ':' then 'x').
    """
    dynamic = [s for s in specs if s.dynamic_dims]
    if bad := [s.name for s in dynamic if re.search(r"[,:]", s.name)]:
        raise UserInputError(
            f"TensorRT EP profile shapes cannot name inputs {bad}: ',' and ':' are separators"
        )
    ranges = {s.name: shape_range(s, dims) for s in dynamic}
    if not ranges:
        return {}
    return {
        f"trt_profile_{which}_shapes": ",".join(
            f"{name}:{'x'.join(str(d) for d in getattr(rng, which))}" for name, rng in ranges.items()
        )
        for which in ("min", "opt", "max")
    }


def trt_options(
    config: OnnxRuntimeGpuConfig,
    specs: list[InputSpec],
    dims: dict[str, DimRange],
    cache: Path,
    precision: str,
) -> dict[str, str]:
    """TensorRT EP provider options (names from tensorrt_provider_options.h, OrtTensorRTProviderOptionsV2)."""
    int8 = config.trt_int8_enable if config.trt_int8_enable is not None else precision == "int8"
    options = {
        "device_id": str(config.device_id),
        "trt_fp16_enable": _flag(config.trt_fp16_enable),
        "trt_int8_enable": _flag(int8),
        "trt_engine_cache_enable": _flag(config.trt_engine_cache_enable),
        "trt_timing_cache_enable": _flag(config.trt_timing_cache_enable),
    }
    if config.trt_engine_cache_enable:
        options["trt_engine_cache_path"] = str(config.trt_engine_cache_path or cache)
    if config.trt_timing_cache_enable:  # a folder; ORT uses the engine cache folder when unset
        options["trt_timing_cache_path"] = str(
            config.trt_timing_cache_path or config.trt_engine_cache_path or cache
        )
    if config.trt_max_workspace_size:
        options["trt_max_workspace_size"] = str(config.trt_max_workspace_size)
    if config.trt_builder_optimization_level is not None:
        options["trt_builder_optimization_level"] = str(config.trt_builder_optimization_level)
    return {**options, **trt_profile_shapes(specs, dims)}


def cuda_options(config: OnnxRuntimeGpuConfig) -> dict[str, str]:
    return {"device_id": str(config.device_id), "cudnn_conv_algo_search": config.cudnn_conv_algo_search}


def provider_chain(
    config: OnnxRuntimeGpuConfig,
    specs: list[InputSpec],
    dims: dict[str, DimRange],
    work: Path,
    precision: str,
) -> list[Any]:
    """ORT's providers list: [TensorRT,] CUDA, CPU. The CUDA EP after TensorRT takes the nodes
    TensorRT rejects (ORT docs); the cache folders TensorRT writes to are created here."""
    chain: list[Any] = [(PROVIDERS["cuda"], cuda_options(config)), CPU]
    if config.provider == "tensorrt":
        trt = trt_options(config, specs, dims, work / "ort_tensorrt_cache", precision)
        for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
            if key in trt:
                Path(trt[key]).mkdir(parents=True, exist_ok=True)
        chain.insert(0, (PROVIDERS["tensorrt"], trt))
    return chain
