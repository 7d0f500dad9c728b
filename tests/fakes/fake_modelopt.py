"""A FAKE `modelopt.torch.quantization` for tests: quantize() only runs the calibration loop.

It records the config it was given and how many forward passes calibration made, and
export_torch_mode() records that it was entered. Nothing is quantized.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import types
from collections.abc import Iterator
from typing import Any

INT8_DEFAULT_CFG = {"fake": "int8"}
FP8_DEFAULT_CFG = {"fake": "fp8"}
record: dict[str, Any] = {}


def quantize(model: Any, config: dict[str, Any], forward_loop: Any) -> Any:
    passes = []
    handle = model.register_forward_pre_hook(lambda module, args: passes.append(len(args)))
    forward_loop(model)
    handle.remove()
    record.update(config=config, forward_passes=len(passes))
    return model


@contextlib.contextmanager
def export_torch_mode() -> Iterator[None]:
    record["export_torch_mode"] = record.get("export_torch_mode", 0) + 1
    yield


def install(monkeypatch: Any) -> None:
    """Put fake modelopt, modelopt.torch, modelopt.torch.quantization(.utils) into sys.modules."""
    import sys

    record.clear()
    quantization = types.ModuleType("modelopt.torch.quantization")
    quantization.INT8_DEFAULT_CFG, quantization.FP8_DEFAULT_CFG = INT8_DEFAULT_CFG, FP8_DEFAULT_CFG
    quantization.quantize = quantize
    utils = types.ModuleType("modelopt.torch.quantization.utils")
    utils.export_torch_mode = export_torch_mode
    modules = {
        "modelopt": types.ModuleType("modelopt"),
        "modelopt.torch": types.ModuleType("modelopt.torch"),
        "modelopt.torch.quantization": quantization,
        "modelopt.torch.quantization.utils": utils,
    }
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, module)
