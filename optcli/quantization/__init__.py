"""Quantizers, looked up by `quantization.quantizer`."""

from __future__ import annotations

from optcli.quantization.quantizers import QUANTIZERS
from optcli.quantization.registry import Quantizer
from optcli.quantization.settings import CalibrationSettings, QuantizationSettings

__all__ = ["QUANTIZERS", "CalibrationSettings", "QuantizationSettings", "Quantizer"]
