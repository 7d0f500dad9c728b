"""Whether a GPU provider's shared library can load here, and why not.

onnxruntime-gpu lists CUDAExecutionProvider and TensorrtExecutionProvider in get_available_providers()
on any machine: the list says what the wheel was built with, not what can run. The provider library
(capi/libonnxruntime_providers_<name>.so) is dlopen'ed only when a session asks for it; when its CUDA,
cuDNN or TensorRT dependencies are missing ORT logs the error and the session quietly runs on the CPU
(checked with the real onnxruntime-gpu 1.31 wheel on a machine without CUDA). Loading that same library
here gives the loader's own reason ("libcublasLt.so.13: cannot open shared object file") before any
stage runs.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

LIBRARIES = {
    "CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
    "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so",
}


def requirements() -> str:
    """What this onnxruntime-gpu build needs, from the CUDA version it reports."""
    import onnxruntime as ort

    cuda = getattr(ort, "cuda_version", "") or ""
    major = cuda.split(".")[0] if cuda else ""
    need = f"CUDA {major}.x, cuDNN 9.x" if major else "CUDA and cuDNN"
    tensorrt = "and TensorRT (libnvinfer) for its TensorRT EP"
    return f"onnxruntime-gpu {ort.__version__} needs an NVIDIA driver, {need} ({tensorrt})"


def _preload() -> None:
    """Load CUDA/cuDNN from the nvidia-* pip wheels when present, as ORT's docs ask (ORT >= 1.21):
    without it those wheels are not on the loader's path and the provider fails to load."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception:  # best effort: a failure here shows up as the provider's own load error
        return


def provider_load_error(provider: str) -> str | None:
    """The loader's error for `provider`'s library, or None when it loads (or this cannot be told here:
    not Linux, or a build that links the provider statically)."""
    if provider not in LIBRARIES or not sys.platform.startswith("linux"):
        return None
    import onnxruntime as ort

    path = Path(ort.__file__).parent / "capi" / LIBRARIES[provider]
    if not path.is_file():
        return None
    _preload()
    try:
        # RTLD_LAZY: only missing libraries fail; Provider_GetHost, which ORT provides when it loads the
        # library itself, stays unresolved until then. A library that loads stays loaded, as ORT's will.
        ctypes.CDLL(str(path), mode=os.RTLD_LAZY | os.RTLD_LOCAL)
    except OSError as exc:
        return str(exc).replace(str(path) + ": ", "").strip()
    return None
