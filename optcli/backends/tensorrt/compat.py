"""The TensorRT import gate, version checks and the GPU facts plans are tied to.

Nothing here imports `tensorrt` at module level: optcli must import (and `--help` must work) with
core dependencies only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from optcli.backends.base import Unavailable
from optcli.errors import MissingDependencyError
from optcli.optional import OptionalPackage

INSTALL_HINT = "pip install tensorrt --extra-index-url https://pypi.nvidia.com (NVIDIA GPU and driver needed)"
TENSORRT = OptionalPackage(
    "tensorrt", "tensorrt", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"), INSTALL_HINT
)
NO_GPU_FIX = "a machine with an NVIDIA GPU and a CUDA build of torch"
FP8_MIN_CAPABILITY = (8, 9)  # FP8 tensor cores: Ada (8.9) and Hopper (9.0) onwards
AMPERE = (8, 0)
QUANTIZED = ("int8", "fp8")


@dataclass(frozen=True)
class GpuInfo:
    """The device a plan is built for; plans deserialize only on the same GPU model and TRT version."""

    name: str
    capability: tuple[int, int]

    @property
    def sm(self) -> str:
        return f"sm{self.capability[0]}{self.capability[1]}"


def import_tensorrt() -> ModuleType:
    """Import `tensorrt` or raise exit 3 with the NVIDIA-index install command (never auto-install)."""
    try:
        import tensorrt
    except Exception as exc:  # a wheel without its CUDA libraries fails with OSError, not ImportError
        raise MissingDependencyError(
            f"TensorRT cannot be imported: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint=INSTALL_HINT,
        ) from exc
    return tensorrt


_LOGGERS: dict[int, tuple[ModuleType, Any]] = {}


def shared_logger(trt: ModuleType) -> Any:
    """One logger per process (TensorRT warns when builders/runtimes get different ones) that keeps
    error messages so a failed build can say why instead of pointing at stderr."""
    key = id(trt)
    if key not in _LOGGERS or _LOGGERS[key][0] is not trt:

        class RecordingLogger(trt.ILogger):  # type: ignore[name-defined, misc]
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity: Any, msg: str) -> None:  # must never raise: TensorRT calls it from C++
                if enum_name(severity) in ("ERROR", "INTERNAL_ERROR"):
                    self.errors.append(str(msg))

            def take(self) -> list[str]:
                errors, self.errors = self.errors, []
                return errors

        _LOGGERS[key] = (trt, RecordingLogger())
    return _LOGGERS[key][1]


def trt_major(version: str) -> int:
    """Major version from `trt.__version__` ('10.9.0.34' -> 10); 0 when unparseable."""
    match = re.match(r"\s*(\d+)", version or "")
    return int(match.group(1)) if match else 0


def enum_name(value: Any) -> str:
    """Symbolic name of a TensorRT enum value (pybind11 enums have `.name`); values were renumbered in 11."""
    name = getattr(value, "name", None)
    return str(name if name is not None else value).split(".")[-1].upper()


def current_gpu() -> GpuInfo | None:
    """The CUDA device torch sees (device 0), or None. Tests replace this function."""
    import torch

    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return GpuInfo(torch.cuda.get_device_name(0), (int(major), int(minor)))


# Builder flags of legacy weak typing per artifact precision (TensorRT 10.x; all removed in 11).
LEGACY_FLAGS = {"fp16": ("FP16",), "bf16": ("BF16",), "int8": ("FP16", "INT8"), "fp8": ("FP16", "FP8")}


def legacy_flags_problem(trt: ModuleType, legacy: bool, precision: str | None = None) -> str | None:
    """Why `legacy_precision_flags` cannot be honoured with this TensorRT module, or None. Decided on
    the module's own BuilderFlag members too, not only its version string (10.x deprecates them)."""
    if not legacy:
        return None
    version = str(getattr(trt, "__version__", "unknown"))
    if trt_major(version) >= 11:
        return (
            f"legacy_precision_flags needs TensorRT 10.x weak typing; TensorRT {version} removed the "
            "FP16/INT8/FP8 builder flags and always builds strongly typed networks"
        )
    needed = LEGACY_FLAGS.get(precision or "", ("FP16",))
    members = getattr(trt.BuilderFlag, "__members__", {})
    missing = [name for name in needed if name not in members]
    if missing:
        return f"legacy_precision_flags: TensorRT {version} has no BuilderFlag {', '.join(missing)}"
    return None


LEGACY_FIX = "remove legacy_precision_flags (precision comes from the ONNX graph), or use tensorrt<11"


def check_legacy_flags(trt: ModuleType, legacy: bool, precision: str | None = None) -> None:
    """Refuse legacy weak typing this TensorRT cannot do (exit 3: the installed TensorRT lacks it)."""
    problem = legacy_flags_problem(trt, legacy, precision)
    if problem:
        raise MissingDependencyError(f"tensorrt: {problem}", hint=LEGACY_FIX)


NO_CUDA_FIX = "check the NVIDIA driver and CUDA_VISIBLE_DEVICES; `nvidia-smi` must list the GPU"


def create(factory: Any, logger: Any) -> Any:
    """`trt.Builder(logger)` / `trt.Runtime(logger)`. TensorRT returns NULL when it cannot initialise CUDA
    (no device, driver too old), which the bindings raise as TypeError 'factory function returned
    nullptr': that is a missing device (exit 3), not a bug."""
    logger.take()
    try:
        return factory(logger)
    except TypeError as exc:
        what, detail = (
            getattr(factory, "__name__", "TensorRT object"),
            "; ".join(logger.take()[-3:]) or str(exc),
        )
        raise MissingDependencyError(
            f"tensorrt: could not create a {what}: {detail}", hint=NO_CUDA_FIX
        ) from exc


def device_problem(precision: str, hardware_compatibility: str, gpu: GpuInfo) -> Unavailable | None:
    """Precision or portability options this GPU cannot build; None when it can."""
    if precision == "fp8" and gpu.capability < FP8_MIN_CAPABILITY:
        cc = ".".join(map(str, gpu.capability))
        return Unavailable(
            f"tensorrt: FP8 needs compute capability >= 8.9; {gpu.name} has {cc}",
            "an Ada/Hopper (or newer) GPU, or quantize to int8",
        )
    if hardware_compatibility == "ampere_plus" and gpu.capability < AMPERE:
        return Unavailable(
            f"tensorrt: hardware_compatibility 'ampere_plus' needs an Ampere+ GPU; {gpu.name} is older",
            "hardware_compatibility: none",
        )
    return None
