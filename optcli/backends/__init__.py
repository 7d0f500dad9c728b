"""Engines, looked up by the `engine` name recipes use in `build:`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Union

from pydantic import Field

from optcli.backends.aoti_engine import AotiConfig, AotiEngine
from optcli.backends.base import Engine, EngineConfig, EngineContext, Unavailable
from optcli.backends.onnxruntime import OnnxRuntimeConfig, OnnxRuntimeEngine
from optcli.backends.onnxruntime_gpu import ONNXRUNTIME_GPU, OnnxRuntimeGpuConfig, OnnxRuntimeGpuEngine
from optcli.backends.openvino_engine import OPENVINO, OpenVINOConfig, OpenVINOEngine
from optcli.backends.tensorrt import TensorRTConfig, TensorRTEngine
from optcli.backends.tensorrt.compat import TENSORRT
from optcli.backends.torch_engine import TORCHAO, TorchConfig, TorchEngine
from optcli.backends.torch_tensorrt_engine import (
    MODELOPT_TORCH,
    TORCH_TENSORRT,
    TorchTensorRTConfig,
    TorchTensorRTEngine,
)
from optcli.optional import OptionalPackage


@dataclass(frozen=True)
class EngineKind:
    """A registered engine. `requires`: the optional packages it (or one of its options) needs,
    which `optcli doctor` checks."""

    name: str
    config: type[EngineConfig]
    engine: type[Engine]
    summary: str
    requires: tuple[OptionalPackage, ...] = ()


ENGINES: dict[str, EngineKind] = {
    kind.name: kind
    for kind in (
        EngineKind("onnxruntime", OnnxRuntimeConfig, OnnxRuntimeEngine, "ONNX Runtime, CPU provider"),
        EngineKind(
            "torch",
            TorchConfig,
            TorchEngine,
            "PyTorch eager/compile, CPU/CUDA, torchao INT8/FP8",
            (TORCHAO,),
        ),
        EngineKind("aoti", AotiConfig, AotiEngine, "AOTInductor .pt2 package (torch.export), CPU/CUDA"),
        EngineKind(
            "onnxruntime_gpu",
            OnnxRuntimeGpuConfig,
            OnnxRuntimeGpuEngine,
            "ONNX Runtime with the CUDA or TensorRT execution provider",
            (ONNXRUNTIME_GPU,),
        ),
        EngineKind(
            "openvino",
            OpenVINOConfig,
            OpenVINOEngine,
            "OpenVINO on CPU: FP32/BF16, INT8 Q/DQ (NNCF or ORT)",
            (OPENVINO,),
        ),
        EngineKind(
            "tensorrt",
            TensorRTConfig,
            TensorRTEngine,
            "TensorRT plan built from an ONNX artifact",
            (TENSORRT,),
        ),
        EngineKind(
            "torch_tensorrt",
            TorchTensorRTConfig,
            TorchTensorRTEngine,
            "Torch-TensorRT (dynamo), FP32/FP16/BF16, ModelOpt INT8/FP8",
            (TORCH_TENSORRT, MODELOPT_TORCH),
        ),
    )
}

EngineEntry = Annotated[
    Union[tuple(kind.config for kind in ENGINES.values())],  # noqa: UP007 - built from the registry
    Field(discriminator="engine"),
]


def create_engine(config: EngineConfig, context: EngineContext) -> Engine:
    return ENGINES[config.engine].engine(config, context)  # type: ignore[attr-defined]


def unavailable(config: EngineConfig, precision: str | None = None) -> Unavailable | None:
    return ENGINES[config.engine].engine.unavailable(config, precision)  # type: ignore[attr-defined]


__all__ = ["ENGINES", "Engine", "EngineContext", "EngineEntry", "Unavailable", "create_engine", "unavailable"]
