"""TensorRT engine: ONNX artifact -> strongly typed plan (cached per GPU/TensorRT/ONNX) -> CUDA inference.

`tensorrt` itself is imported only when an engine is checked or loaded, so this package imports with
core dependencies.
"""

from __future__ import annotations

from optcli.backends.tensorrt.config import TensorRTConfig
from optcli.backends.tensorrt.engine import TensorRTEngine

__all__ = ["TensorRTConfig", "TensorRTEngine"]
