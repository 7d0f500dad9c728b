"""Which precision each engine layer runs in, from the engine inspector's JSON (pure functions).

Layouts (engine built with ProfilingVerbosity.DETAILED):
- 10.x: each layer's Inputs/Outputs entry has one string, "Format/Datatype": "Row major linear FP32
  format", "Channel major FP16 format where channel % 8 == 0", or a bare type ("Float", "Int8") for
  Myelin layers (NVIDIA/TensorRT v10.x tools/Polygraphy/polygraphy/backend/trt/util.py reads this key).
- 11.x: separate "Format" and "DataType" fields ("DataType": "Float"; NVIDIA's 10.x-to-11.x
  IEngineInspector migration guide shows this for I/O tensors).
A layer counts in the precision of its narrowest input, as TensorRT's engine explorer (trex) uses
the input precision: a fused INT8 convolution reads INT8, a Quantize reformat reads FP32.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# Tokens of format/type strings -> our names. FP32 "Float" and FP16 "Half" are TensorRT's type names.
_TOKENS = {
    "FP32": "FP32", "FLOAT": "FP32", "FLOAT32": "FP32",
    "FP16": "FP16", "HALF": "FP16", "FLOAT16": "FP16",
    "BF16": "BF16", "BFLOAT16": "BF16",
    "INT8": "INT8", "FP8": "FP8", "E4M3": "FP8", "FP8E4M3": "FP8",
    "INT4": "INT4", "FP4": "FP4", "FP4E2M1": "FP4",
    "INT32": "INT32", "INT64": "INT64", "UINT8": "UINT8", "BOOL": "BOOL",
}  # fmt: skip
QUANTIZED = ("INT8", "FP8", "INT4", "FP4")
FLOATING = ("FP16", "BF16", "FP32")
# Narrowest first: the layer's compute precision is the lowest one among its inputs.
_ORDER = (*QUANTIZED, "FP16", "BF16", "FP32", "UINT8", "BOOL", "INT32", "INT64")


@dataclass
class PrecisionSummary:
    """Layer counts per precision; `detailed` False when the plan was not built with DETAILED verbosity."""

    counts: dict[str, int] = field(default_factory=dict)
    layers: int = 0
    detailed: bool = True

    @property
    def quantized(self) -> int:
        return sum(self.counts.get(p, 0) for p in QUANTIZED)

    @property
    def compute(self) -> int:
        """Layers in a floating or quantized precision (shape and index layers left out)."""
        return self.quantized + sum(self.counts.get(p, 0) for p in FLOATING)


def dtype_of(text: str | None) -> str | None:
    """'Row major linear FP32 format (kLINEAR)' -> 'FP32'; 'Half' -> 'FP16'; None when unknown."""
    for token in re.findall(r"[A-Za-z0-9]+", (text or "").upper()):
        if token in _TOKENS:
            return _TOKENS[token]
    return None


def tensor_dtype(tensor: dict[str, Any]) -> str | None:
    """One Inputs/Outputs entry in either layout; the 11.x DataType field wins over format text."""
    for key in ("DataType", "Format/Datatype", "Format"):
        found = dtype_of(tensor.get(key)) if isinstance(tensor.get(key), str) else None
        if found:
            return found
    return None


def layer_precision(layer: dict[str, Any]) -> str | None:
    found = [d for d in map(tensor_dtype, layer.get("Inputs") or []) if d]
    found = found or [d for d in map(tensor_dtype, layer.get("Outputs") or []) if d]
    if not found:
        return None
    return min(found, key=lambda d: _ORDER.index(d) if d in _ORDER else len(_ORDER))


def summarize(info: str | dict[str, Any]) -> PrecisionSummary:
    """Counts from `get_engine_information(LayerInformationFormat.JSON)` output (string or parsed)."""
    data = json.loads(info) if isinstance(info, str) else info
    layers = (data.get("Layers") or []) if isinstance(data, dict) else []
    if layers and all(isinstance(layer, str) for layer in layers):
        return PrecisionSummary({}, len(layers), detailed=False)  # names only: not built DETAILED
    counts = Counter(layer_precision(layer) or "unknown" for layer in layers if isinstance(layer, dict))
    return PrecisionSummary(dict(sorted(counts.items())), len(layers))


def higher_precision_warning(label: str, artifact_precision: str, summary: PrecisionSummary) -> str | None:
    """The 'INT8 no faster than FP16' trap: Q/DQ placement left most compute layers unquantized."""
    if artifact_precision not in ("int8", "fp8") or not summary.detailed or summary.compute == 0:
        return None
    if summary.quantized * 2 > summary.compute:
        return None
    higher = ", ".join(f"{summary.counts[p]} {p}" for p in FLOATING if summary.counts.get(p))
    return (
        f"engine '{label}': only {summary.quantized} of {summary.compute} compute layers run in "
        f"{artifact_precision.upper()} ({higher} run in higher precision). Such engines are often no faster "
        "than an FP16 build: check where the Q/DQ nodes sit (TensorRT fuses Q/DQ only around supported "
        "ops) and compare against a tensorrt engine built from the FP16 artifact."
    )
