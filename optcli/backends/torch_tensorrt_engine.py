"""Torch-TensorRT engine: the PyTorch model compiled by torch_tensorrt (dynamo IR) into TensorRT engines.

Written from the Torch-TensorRT sources (pytorch/TensorRT, tag v2.13.0-rc13 and main at 2.14.0a0) and
tested only against a fake module: it has not run on a GPU here.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from optcli.backends.base import Engine, EngineConfig, Unavailable
from optcli.backends.shapes import shape_range, varying_axes
from optcli.errors import StageError, UserInputError, require
from optcli.flatten import flatten_outputs
from optcli.optional import OptionalPackage
from optcli.specs import DimRange, InputSpec

DEVICE = "cuda"  # tests drive the engine on "cpu" with a fake torch_tensorrt
INSTALL = "pip install torch-tensorrt (matching your torch)"
TORCH_TENSORRT = OptionalPackage(
    "torch-tensorrt", "torch_tensorrt", ("torch-tensorrt", "torch_tensorrt"), INSTALL
)
MODELOPT_TORCH = OptionalPackage(
    "nvidia-modelopt (torch)",
    "modelopt.torch.quantization",
    ("nvidia-modelopt",),
    "pip install 'nvidia-modelopt[torch]'",
)
_PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


class TorchTensorRTConfig(EngineConfig):
    engine: Literal["torch_tensorrt"] = "torch_tensorrt"
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32",
        description="Compute dtype; the model and its float inputs are cast to it before compiling.",
    )
    autocast: bool = Field(
        False, description="Keep the model FP32; Torch-TensorRT (>= 2.13) autocasts ops to dtype instead."
    )
    quantize: Literal["none", "int8", "fp8"] = Field(
        "none", description="ModelOpt PTQ on the recipe's calibration data first; fp8 needs SM >= 8.9."
    )
    calibration_steps: int = Field(16, ge=1, description="Calibration batches ModelOpt sees.")
    workspace_mb: int | None = Field(None, ge=1, description="TensorRT workspace limit in MiB.")
    optimization_level: int | None = Field(
        None, ge=0, le=5, description="TensorRT builder level (default 3)."
    )
    save_exported_program: bool = Field(True, description="Save the result as an ExportedProgram (.ep).")

    @model_validator(mode="after")
    def _autocast_needs_low_dtype(self) -> TorchTensorRTConfig:
        if self.autocast and self.dtype == "float32":
            raise ValueError("autocast needs dtype float16 or bfloat16")
        return self


def version_tuple(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def compile_settings(config: TorchTensorRTConfig, version: tuple[int, int]) -> dict[str, Any]:
    """torch_tensorrt.compile keywords besides ir and inputs.

    From 2.13 the dynamo path ignores `enabled_precisions` (compile() takes it, dynamo.compile has no such
    parameter; TensorRT 11 is strongly typed): precision is the model's dtype (we cast it) or autocast's
    (NVIDIA-NOTES.md "torch-tensorrt"; pytorch/TensorRT v2.13.0-rc13 _compile.py, dynamo/_compiler.py).
    Before 2.13 TensorRT was weakly typed and used only the precisions listed there, so we list them.
    """
    import torch

    settings: dict[str, Any] = {}
    if config.workspace_mb:
        settings["workspace_size"] = config.workspace_mb << 20
    if config.optimization_level is not None:
        settings["optimization_level"] = config.optimization_level
    low = getattr(torch, config.dtype)
    if version >= (2, 13):
        if config.autocast:
            settings.update(enable_autocast=True, autocast_low_precision_type=low)
    else:
        precisions = {torch.float32, low}
        if config.quantize != "none":
            precisions.add(torch.int8 if config.quantize == "int8" else torch.float8_e4m3fn)
        settings["enabled_precisions"] = precisions
    return settings


def trt_inputs(trt: Any, specs: list[InputSpec], dims: dict[str, DimRange], float_dtype: Any) -> list[Any]:
    """One torch_tensorrt.Input per input: min/opt/max from model.dims, floats in the compute dtype.

    shared_dims (>= 2.13; dynamo/_tracer.py build_dim_registry) makes a named dim one torch.export Dim
    across inputs ('batch' on tokens and mask); older versions ignore it. torch_tensorrt traces with
    Input.torch_tensor (default: opt_shape), and torch.export specializes sizes 0 and 1, so the
    example tensor gives varying dims at least 2, as optcli's own export does.
    """
    import torch

    inputs = []
    for spec in specs:
        rng, shared = shape_range(spec, dims), varying_axes(spec, dims)
        dtype = float_dtype if "float" in spec.dtype else getattr(torch, spec.dtype)
        trace = [
            min(max(2, o), hi) if axis in shared else o for axis, (o, hi) in enumerate(zip(rng.opt, rng.max))
        ]
        kwargs = {"min_shape": rng.min, "opt_shape": rng.opt, "max_shape": rng.max, "dtype": dtype}
        if shared:
            kwargs["shared_dims"] = shared
        inputs.append(trt.Input(name=spec.name, torch_tensor=torch.ones(trace, dtype=dtype), **kwargs))
    return inputs


class TorchTensorRTEngine(Engine):
    config: TorchTensorRTConfig

    @classmethod
    def unavailable(cls, config: TorchTensorRTConfig, precision: str | None = None) -> Unavailable | None:
        import torch

        if not torch.cuda.is_available():
            return Unavailable("torch_tensorrt: PyTorch sees no CUDA device", f"a CUDA GPU, then {INSTALL}")
        try:
            trt = importlib.import_module("torch_tensorrt")
        except Exception as exc:  # ImportError, or OSError/RuntimeError from a torch/TensorRT mismatch
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return Unavailable(f"torch_tensorrt: cannot import torch_tensorrt ({why})", INSTALL)
        version = getattr(trt, "__version__", "0.0")
        if config.autocast and version_tuple(version) < (2, 13):
            return Unavailable(
                f"torch_tensorrt: autocast needs torch-tensorrt >= 2.13, not {version}", INSTALL
            )
        if config.quantize != "none" and not MODELOPT_TORCH.found():
            return Unavailable("torch_tensorrt: quantize needs ModelOpt", MODELOPT_TORCH.install)
        need = (8, 9) if config.quantize == "fp8" else (8, 0) if config.dtype == "bfloat16" else None
        have = torch.cuda.get_device_capability()
        if need and have < need:
            what = "FP8" if config.quantize == "fp8" else "BF16"
            return Unavailable(
                f"torch_tensorrt: {what} needs compute capability >= {need[0]}.{need[1]}; "
                f"{torch.cuda.get_device_name()} has {have[0]}.{have[1]}",
                "an Ada/Hopper GPU" if what == "FP8" else "an Ampere or newer GPU",
            )
        return None

    def default_label(self) -> str:
        return f"torch_tensorrt-{self.precision}"

    @property
    def precision(self) -> str:
        return self.config.quantize if self.config.quantize != "none" else _PRECISION[self.config.dtype]

    def _load_impl(self) -> None:
        import torch

        trt = require("torch_tensorrt", package="torch-tensorrt", purpose="the torch_tensorrt engine")
        self._torch, self._version = torch, str(getattr(trt, "__version__", "unknown"))
        self._specs: list[InputSpec] = self._extra("inputs")
        cast = self.config.dtype != "float32" and not self.config.autocast
        self._float_dtype = getattr(torch, self.config.dtype) if cast else torch.float32
        model = copy.deepcopy(self.context.torch_model()).eval().to(DEVICE)  # never touch the baseline
        model = model.to(self._float_dtype) if cast else model
        export_mode: Any = contextlib.nullcontext()
        if self.config.quantize != "none":
            model, export_mode = self._quantize(model)
        self._inputs = trt_inputs(trt, self._specs, self._extra("dims"), self._float_dtype)
        self._settings = compile_settings(self.config, version_tuple(self._version))
        with torch.no_grad(), export_mode:
            self._module = trt.compile(model, ir="dynamo", arg_inputs=self._inputs, **self._settings)
        self._saved = self._save(trt) if self.config.save_exported_program else None

    def _quantize(self, model: Any) -> tuple[Any, Any]:
        """ModelOpt PTQ. Export must then run under export_torch_mode (NVIDIA-NOTES.md): Torch-TensorRT
        main enters it itself for ModelOpt models, 2.13's tracer does not, so we wrap compile in it."""
        mtq = require("modelopt.torch.quantization", package="nvidia-modelopt[torch]", purpose="quantize")
        utils = importlib.import_module("modelopt.torch.quantization.utils")
        if (batches := self.context.extras.get("calibration_batches")) is None:
            raise UserInputError(
                "build: torch_tensorrt quantize needs quantization.calibration in the recipe"
            )
        seen = []

        def forward_loop(m: Any) -> None:
            for _, batch in zip(range(self.config.calibration_steps), batches()):
                m(*self._tensors(batch))
                seen.append(1)

        cfg = mtq.INT8_DEFAULT_CFG if self.config.quantize == "int8" else mtq.FP8_DEFAULT_CFG
        with self._torch.no_grad():
            model = mtq.quantize(model, cfg, forward_loop)
        if not seen:
            raise UserInputError("build: torch_tensorrt quantize got no calibration batches")
        return model, utils.export_torch_mode()

    def _save(self, trt: Any) -> Path:
        folder = Path(self._extra("work_dir")) / "torch_tensorrt"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.label)}.ep"
        try:
            trt.save(self._module, str(path), output_format="exported_program", arg_inputs=self._inputs)
        except Exception as exc:
            raise StageError(f"build: torch_tensorrt.save failed for '{self.label}': {exc}") from exc
        return path

    def _tensors(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        tensors = [self._torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in self._specs]
        return [t.to(DEVICE, self._float_dtype if t.is_floating_point() else t.dtype) for t in tensors]

    def _run_bound_impl(self, bound: list[Any]) -> Any:
        with self._torch.no_grad():
            return self._module(*bound)

    def _bind_impl(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        return self._tensors(feeds)

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = flatten_outputs(self._run_bound_impl(self._tensors(feeds)))
        return [(t.float() if t.is_floating_point() else t).detach().cpu().numpy() for t in outputs]

    def _synchronize_impl(self) -> None:
        if DEVICE == "cuda":
            self._torch.cuda.synchronize()

    def _close_impl(self) -> None:
        del self._module

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "runtime": f"torch_tensorrt {self._version}",
            "device": self._torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE,
            **self.config.model_dump(include={"dtype", "autocast", "quantize"}),
            "compile_settings": {k: str(v) for k, v in self._settings.items()},
            "exported_program": str(self._saved) if self._saved else None,
        }
