"""Quantizers, looked up by `quantization.quantizer`."""

from __future__ import annotations

from optcli.quantization import modelopt_onnx, nncf_onnx, ort_static
from optcli.quantization.registry import Quantizer
from optcli.quantization.settings import CalibrationSettings, QuantizationSettings

QUANTIZERS: dict[str, Quantizer] = {
    q.QUANTIZER.name: q.QUANTIZER for q in (ort_static, modelopt_onnx, nncf_onnx)
}

__all__ = ["QUANTIZERS", "CalibrationSettings", "QuantizationSettings", "Quantizer"]
