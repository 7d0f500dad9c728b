"""The quantizer registry: one line per quantizer module, each of which declares its own `QUANTIZER`."""

from __future__ import annotations

from optcli.quantization import modelopt_onnx, nncf_onnx, ort_static
from optcli.quantization.registry import Quantizer

QUANTIZERS: dict[str, Quantizer] = {
    q.QUANTIZER.name: q.QUANTIZER for q in (ort_static, modelopt_onnx, nncf_onnx)
}
DEFAULT_QUANTIZER = "onnxruntime"
