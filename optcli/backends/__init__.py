"""Engines, looked up by the `engine` name recipes use in `build:`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Union

from pydantic import Field

from optcli.backends.base import Engine, EngineConfig, EngineContext, Unavailable
from optcli.backends.onnxruntime import OnnxRuntimeConfig, OnnxRuntimeEngine
from optcli.backends.torch_engine import TorchConfig, TorchEngine


@dataclass(frozen=True)
class EngineKind:
    name: str
    config: type[EngineConfig]
    engine: type[Engine]
    summary: str


ENGINES: dict[str, EngineKind] = {
    kind.name: kind
    for kind in (
        EngineKind("onnxruntime", OnnxRuntimeConfig, OnnxRuntimeEngine, "ONNX Runtime, CPU provider"),
        EngineKind("torch", TorchConfig, TorchEngine, "PyTorch eager/compile, CPU/CUDA, torchao INT8/FP8"),
    )
}

EngineEntry = Annotated[
    Union[tuple(kind.config for kind in ENGINES.values())],  # noqa: UP007 - built from the registry
    Field(discriminator="engine"),
]


def create_engine(config: EngineConfig, context: EngineContext) -> Engine:
    return ENGINES[config.engine].engine(config, context)  # type: ignore[attr-defined]


def unavailable(config: EngineConfig) -> Unavailable | None:
    return ENGINES[config.engine].engine.unavailable(config)  # type: ignore[attr-defined]


__all__ = ["ENGINES", "Engine", "EngineContext", "EngineEntry", "Unavailable", "create_engine", "unavailable"]
