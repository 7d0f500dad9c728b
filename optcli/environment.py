"""What the run ran on: package versions and hardware, for the report and its reproducibility."""

from __future__ import annotations

import hashlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "optcli",
    "torch",
    "onnx",
    "onnxscript",
    "onnxruntime",
    "onnxruntime-gpu",
    "numpy",
    "tensorrt",
    "torch-tensorrt",
    "nvidia-modelopt",
)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """ISA features that decide which kernels (VNNI INT8, AMX) the runtimes can use."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return sorted(
                    f
                    for f in flags
                    if f.startswith(("avx512_vnni", "avx512_bf16", "avx_vnni", "amx", "avx512f", "avx2"))
                )
    except OSError:
        pass
    return []


def describe() -> dict[str, Any]:
    import torch

    gpu = None
    if torch.cuda.is_available():
        gpu = {
            "name": torch.cuda.get_device_name(0),
            "compute_capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
        }
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "cpu_features": cpu_flags(),
        "gpu": gpu,
        "packages": package_versions(),
    }


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    _update(digest, path)
    return digest.hexdigest()[:16]


def model_digest(path: Path) -> str:
    """Digest of an ONNX model with every external-data file its tensors point to.

    The .onnx file holds only offsets into `.onnx.data`: new weights of the same size leave it
    byte-identical, so a cache keyed on it alone would serve statistics of the old weights.
    """
    from optcli.onnx_io import external_data_locations

    digest = hashlib.sha256()
    _update(digest, path)
    for location in sorted(external_data_locations(path)):
        digest.update(b"\0" + location.encode() + b"\0")
        data = path.parent / location
        if data.is_file():  # a missing file fails where the model is loaded, with its own message
            _update(digest, data)
    return digest.hexdigest()[:16]


def _update(digest, path: Path) -> None:
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
