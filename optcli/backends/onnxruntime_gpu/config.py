"""The `build:` entry for ONNX Runtime on a GPU, and the names of the providers it asks for."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from optcli.backends.base import OnnxEngineConfig
from optcli.backends.onnxruntime import GraphOptimization
from optcli.optional import OptionalPackage

PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
CPU = "CPUExecutionProvider"
INSTALL = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (needs CUDA and cuDNN)"
ONNXRUNTIME_GPU = OptionalPackage("onnxruntime-gpu", "onnxruntime", ("onnxruntime-gpu",), INSTALL)


class OnnxRuntimeGpuConfig(OnnxEngineConfig):
    engine: Literal["onnxruntime_gpu"] = "onnxruntime_gpu"
    provider: Literal["cuda", "tensorrt"] = Field("cuda", description="Execution provider to run on.")
    device_id: int = Field(0, ge=0, description="CUDA device index.")
    graph_optimization: GraphOptimization = Field("all", description="ORT session graph optimization level.")
    io_binding: bool = Field(
        True, description="Benchmark with inputs and outputs kept on the GPU (IO binding)."
    )
    max_cpu_share: float = Field(
        0.5, ge=0, le=1, description="Fail when more than this share of node time ran on the CPU provider."
    )
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "EXHAUSTIVE", description="CUDA EP cuDNN convolution algorithm search."
    )
    trt_fp16_enable: bool = Field(False, description="TensorRT FP16 builder flag (weakly typed TensorRT 10).")
    trt_int8_enable: bool | None = Field(
        None, description="TensorRT INT8 flag, for Q/DQ models. Default: on when the artifact is INT8."
    )
    trt_engine_cache_enable: bool = Field(True, description="Cache built TensorRT engines on disk.")
    trt_engine_cache_path: str | None = Field(
        None, description="Engine cache folder. Default: in the work dir."
    )
    trt_timing_cache_enable: bool = Field(True, description="Reuse TensorRT tactic timings across builds.")
    trt_timing_cache_path: str | None = Field(
        None, description="Timing cache folder. Default: the engine cache's."
    )
    trt_max_workspace_size: int | None = Field(None, ge=1, description="TensorRT workspace limit in bytes.")
    trt_builder_optimization_level: int | None = Field(
        None, ge=0, le=5, description="TensorRT builder level."
    )

    @model_validator(mode="after")
    def _trt_options_need_trt(self) -> OnnxRuntimeGpuConfig:
        trt_set = sorted(f for f in self.model_fields_set if f.startswith("trt_"))
        if self.provider != "tensorrt" and trt_set:
            raise ValueError(f"{', '.join(trt_set)} only apply with provider: tensorrt")
        return self
