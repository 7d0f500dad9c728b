"""ONNX Runtime on NVIDIA GPUs (CUDA or TensorRT execution provider), with a check that it really ran there.

ONNX Runtime drops a provider it cannot create with only a log warning ("Failed to create ...",
onnxruntime/python/onnxruntime_pybind_state.cc), and the Python InferenceSession retries on CPU when
creation throws ("Falling back to ...", onnxruntime_inference_collection.py). So after loading we read
session.get_providers() and profile one run to see which provider each node ran on.

config: the `build:` entry; providers: CUDA/TensorRT provider options; libraries: whether a provider's
shared library loads; placement: which provider ran each node, and whether that counts as a fallback;
iobinding: device-resident inputs/outputs; engine: session setup and report. Checked against the real
onnxruntime-gpu wheel on a machine without CUDA (providers, fallback, IO binding calls, profile
format) and with fakes for the GPU-only paths: it has not run on a GPU here.
"""

from __future__ import annotations

from optcli.backends.onnxruntime_gpu.config import (
    CPU,
    INSTALL,
    ONNXRUNTIME_GPU,
    PROVIDERS,
    OnnxRuntimeGpuConfig,
)
from optcli.backends.onnxruntime_gpu.engine import OnnxRuntimeGpuEngine
from optcli.backends.onnxruntime_gpu.placement import Placement, fallback_problem, node_placement
from optcli.backends.onnxruntime_gpu.providers import cuda_options, trt_options, trt_profile_shapes

__all__ = [
    "CPU",
    "INSTALL",
    "ONNXRUNTIME_GPU",
    "PROVIDERS",
    "OnnxRuntimeGpuConfig",
    "OnnxRuntimeGpuEngine",
    "Placement",
    "cuda_options",
    "fallback_problem",
    "node_placement",
    "trt_options",
    "trt_profile_shapes",
]
