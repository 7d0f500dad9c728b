"""Quantizers, looked up by `quantization.quantizer`."""

from __future__ import annotations

from collections.abc import Callable

from optcli.quantization import ort_static
from optcli.quantization.settings import CalibrationSettings, QuantizationSettings

QUANTIZERS: dict[str, Callable] = {"onnxruntime": ort_static.quantize}

__all__ = ["QUANTIZERS", "CalibrationSettings", "QuantizationSettings"]
