"""PyTorch engine: eager or torch.compile, on CPU or CUDA, FP32/FP16/BF16, INT8/FP8 through torchao.

In its default form (eager, FP32, CPU) it is the baseline every other engine is compared with.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Any, Literal

import numpy as np
from pydantic import Field

from optcli.backends.base import Engine, EngineConfig, Unavailable
from optcli.flatten import flatten_outputs
from optcli.optional import OptionalPackage
from optcli.quiet import TORCHAO_LOGGERS, quiet_loggers

TorchDType = Literal["float32", "float16", "bfloat16"]
TorchQuant = Literal["none", "int8_weight_only", "int8_dynamic", "fp8_dynamic"]

_PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
_QUANT_PRECISION = {"int8_weight_only": "int8wo", "int8_dynamic": "int8", "fp8_dynamic": "fp8"}
TORCHAO = OptionalPackage("torchao", "torchao", ("torchao",), "pip install torchao")


class TorchConfig(EngineConfig):
    engine: Literal["torch"] = "torch"
    device: Literal["cpu", "cuda"] = Field("cpu", description="Device to run on.")
    dtype: TorchDType = Field(
        "float32", description="Compute dtype: float32, or bfloat16/float16 via autocast (weights stay FP32)."
    )
    compile: bool = Field(False, description="Wrap the model in torch.compile (compiled at load, not timed).")
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = Field(
        "default", description="torch.compile mode ('reduce-overhead' uses CUDA graphs on GPU)."
    )
    quantize: TorchQuant = Field(
        "none",
        description="torchao post-training quantization of Linear layers: int8_weight_only, int8_dynamic "
        "(INT8 activations and weights) or fp8_dynamic (FP8 matmuls; needs compute capability >= 8.9).",
    )
    threads: int | None = Field(None, ge=1, description="torch intra-op threads on CPU. Default: torch's.")


class TorchEngine(Engine):
    config: TorchConfig

    @classmethod
    def unavailable(cls, config: TorchConfig, precision: str | None = None) -> Unavailable | None:
        import torch

        if config.device == "cuda" and not torch.cuda.is_available():
            return Unavailable(
                "torch: no CUDA device is visible to PyTorch", "a CUDA GPU and a CUDA build of torch"
            )
        if config.quantize != "none" and not TORCHAO.found():
            return Unavailable("torch: quantize needs torchao, which is not installed", TORCHAO.install)
        if config.quantize == "fp8_dynamic":
            if config.device != "cuda":
                return Unavailable("torch: fp8_dynamic needs a CUDA GPU (FP8 matmuls)", "run on a GPU")
            if torch.cuda.get_device_capability() < (8, 9):
                name = torch.cuda.get_device_name()
                return Unavailable(
                    f"torch: FP8 needs compute capability >= 8.9; {name} has less", "an Ada/Hopper GPU"
                )
        return None

    def default_label(self) -> str:
        parts = ["torch", "compile" if self.config.compile else "eager", self.precision]
        return "-".join(parts + (["cuda"] if self.config.device == "cuda" else []))

    @property
    def precision(self) -> str:
        if self.config.quantize != "none":
            return _QUANT_PRECISION[self.config.quantize]
        return _PRECISION[self.config.dtype]

    def _load_impl(self) -> None:
        import torch

        self._torch = torch
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        model = self.context.torch_model()
        if self.config.quantize != "none" or self.config.device != "cpu":
            model = copy.deepcopy(model)  # never mutate the baseline's module
        model = model.to(self.config.device)
        if self.config.quantize != "none":
            model = _quantize(model, self.config.quantize)
        if self.config.compile:
            model = torch.compile(model, mode=self.config.compile_mode)
        self._model = model

    def _autocast(self):
        torch = self._torch
        if self.config.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.config.device, dtype=getattr(torch, self.config.dtype))

    def _bind_impl(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        torch = self._torch
        return [
            torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.config.device)
            for n in self.context.input_names
        ]

    def _forward(self, args: list[Any]) -> Any:
        with self._torch.inference_mode(), self._autocast():
            return self._model(*args)

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = self._forward(self._bind_impl(feeds))
        return [
            t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy()
            for t in flatten_outputs(outputs)
        ]

    def _run_bound_impl(self, bound: list[Any]) -> None:
        self._forward(bound)

    def _synchronize_impl(self) -> None:
        if self.config.device == "cuda":
            self._torch.cuda.synchronize()

    def describe(self) -> dict[str, Any]:
        import torch

        device = torch.cuda.get_device_name() if self.config.device == "cuda" else "cpu"
        return {
            **super().describe(),
            "runtime": f"torch {torch.__version__}",
            "device": device,
            "mode": "compile" if self.config.compile else "eager",
            "dtype": self.config.dtype,
            "quantize": self.config.quantize,
        }


def _quantize(model: Any, scheme: str) -> Any:
    from optcli.errors import require

    with quiet_loggers(*TORCHAO_LOGGERS):
        quantization = require("torchao.quantization", package="torchao", purpose="torch engine quantize")
    config = {
        "int8_weight_only": quantization.Int8WeightOnlyConfig,
        "int8_dynamic": quantization.Int8DynamicActivationInt8WeightConfig,
        "fp8_dynamic": quantization.Float8DynamicActivationFloat8WeightConfig,
    }[scheme]()
    quantization.quantize_(model, config)
    return model
