"""What a quantizer provides: a quantize function, an availability check, the precisions it supports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optcli.backends.base import Unavailable
from optcli.calibration import Batch
from optcli.quantization.settings import QuantizationSettings

QuantizeFn = Callable[[Path, Path, QuantizationSettings, Iterator[Batch], list[str]], dict[str, Any]]


def always_available(settings: QuantizationSettings) -> Unavailable | None:
    return None


def accept_all(settings: QuantizationSettings) -> None:
    return None


@dataclass(frozen=True)
class Quantizer:
    """A registered quantizer. `quantize(src, dst, settings, batches, input_names)` writes `dst`
    (an ONNX model with Q/DQ nodes) and returns details for the report."""

    name: str
    quantize: QuantizeFn
    precisions: frozenset[str]
    unavailable: Callable[[QuantizationSettings], Unavailable | None] = always_available
    # Raises UserInputError for settings this quantizer cannot honour; preflight calls it early.
    check: Callable[[QuantizationSettings], None] = accept_all
    summary: str = ""
