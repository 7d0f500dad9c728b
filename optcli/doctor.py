"""`optcli doctor`: what is installed and usable here, and the command that adds each missing piece."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata

from optcli.quiet import TORCHAO_LOGGERS, quiet_loggers


@dataclass
class Check:
    name: str
    usable: bool
    detail: str
    fix: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _version(*distributions: str) -> str | None:
    for dist in distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def _import_check(
    name: str,
    module: str,
    distributions: tuple[str, ...],
    fix: str,
    describe: Callable[[object], str] | None = None,
) -> Check:
    version = _version(*distributions)
    if version is None:
        return Check(name, False, "not installed", fix)
    try:
        with quiet_loggers(*TORCHAO_LOGGERS):
            imported = importlib.import_module(module)
    except Exception as exc:  # a broken install (missing CUDA libraries) fails in many ways
        return Check(name, False, f"{version} installed but import fails: {str(exc).splitlines()[0]}", fix)
    return Check(name, True, describe(imported) if describe else version)


def check_torch() -> list[Check]:
    import torch

    checks = [Check("torch", True, f"{torch.__version__} (CUDA build: {torch.version.cuda or 'no'})")]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        major, minor = torch.cuda.get_device_capability(0)
        fp8 = "FP8 capable" if (major, minor) >= (8, 9) else "no FP8 (needs compute capability >= 8.9)"
        checks.append(Check("cuda gpu", True, f"{name}, compute capability {major}.{minor}, {fp8}"))
    else:
        checks.append(
            Check(
                "cuda gpu",
                False,
                "no CUDA device visible to PyTorch",
                "a machine with an NVIDIA GPU and a CUDA build of torch",
            )
        )
    return checks


def check_onnxruntime() -> list[Check]:
    import onnxruntime as ort

    providers = ort.get_available_providers()
    checks = [Check("onnxruntime", True, f"{ort.__version__}, providers: {', '.join(providers)}")]
    gpu_fix = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu (needs CUDA and cuDNN)"
    for provider, label in (
        ("CUDAExecutionProvider", "ort cuda provider"),
        ("TensorrtExecutionProvider", "ort tensorrt provider"),
    ):
        usable = provider in providers
        checks.append(
            Check(
                label,
                usable,
                "available" if usable else "not in this onnxruntime build",
                None if usable else gpu_fix,
            )
        )
    return checks


def run_checks() -> list[Check]:
    checks = [*check_torch(), *check_onnxruntime()]
    checks.append(_import_check("onnx", "onnx", ("onnx",), "pip install onnx"))
    checks.append(
        _import_check(
            "tensorrt",
            "tensorrt",
            ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
            "pip install tensorrt --extra-index-url https://pypi.nvidia.com (NVIDIA GPU and driver needed)",
            lambda m: getattr(m, "__version__", "?"),
        )
    )
    checks.append(
        _import_check(
            "torch-tensorrt",
            "torch_tensorrt",
            ("torch-tensorrt", "torch_tensorrt"),
            "pip install torch-tensorrt (the release matching your torch)",
        )
    )
    checks.append(
        _import_check(
            "nvidia-modelopt",
            "modelopt.onnx.quantization",
            ("nvidia-modelopt",),
            "pip install 'optcli[modelopt]'",
        )
    )
    checks.append(_import_check("torchao", "torchao", ("torchao",), "pip install torchao"))
    checks.append(_import_check("openvino", "openvino", ("openvino",), "pip install 'optcli[openvino]'"))
    checks.append(_import_check("nncf", "nncf", ("nncf",), "pip install 'optcli[openvino]'"))
    checks.append(
        _import_check("torchvision", "torchvision", ("torchvision",), "pip install 'optcli[vision]'")
    )
    return checks
