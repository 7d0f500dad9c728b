"""Quantize a causal LM in place into a compressed-tensors scheme (FP8_DYNAMIC, W8A8, W4A16).

compressed-tensors: the preset scheme is attached to every Linear but the ignored ones, and each
weight's scale (and zero point) comes from its own range per channel or group: round to nearest.
The three schemes quantize activations dynamically per token (or not at all), so this needs no
calibration data. llmcompressor: its `oneshot` with a QuantizationModifier on the calibration
windows; it pins transformers<=5.17, so it is an extra of its own.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

from optcli.errors import MissingDependencyError, UserInputError
from optcli.llm.checkpoint import COMPRESSED_TENSORS, TRANSFORMERS, compressed_tensors
from optcli.optional import OptionalPackage

LLMCOMPRESSOR_INSTALL = (
    "pip install 'optcli[llmcompressor]' in an environment with transformers>=5.15,<=5.17 "
    "(llmcompressor 0.14 pins them), or use quantization.tool: compressed-tensors"
)
LLMCOMPRESSOR = OptionalPackage("llmcompressor", "llmcompressor", ("llmcompressor",), LLMCOMPRESSOR_INSTALL)
# What `optcli doctor` lists for pipeline: llm.
REQUIRES = (TRANSFORMERS, COMPRESSED_TENSORS, LLMCOMPRESSOR)


@dataclass
class Quantized:
    seconds: float
    peak_rss_mb: float  # the process's peak resident set so far (getrusage)
    quantized_modules: int


def quantize(model: Any, scheme: str, tool: str, ignore: list[str], calibration: Any | None) -> Quantized:
    start = time.perf_counter()
    if tool == "llmcompressor":
        _oneshot(model, scheme, ignore, calibration)
    else:
        _round_to_nearest(model, scheme, ignore)
    count = sum(1 for m in model.modules() if getattr(m, "quantization_scheme", None) is not None)
    if count == 0:
        raise UserInputError(f"quantization.ignore: {ignore} leaves no Linear module to quantize")
    return Quantized(round(time.perf_counter() - start, 3), peak_rss_mb(), count)


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1 << 20 if sys.platform == "darwin" else 1 << 10), 1)  # bytes on macOS, KiB on Linux


def _round_to_nearest(model: Any, scheme: str, ignore: list[str]) -> None:
    import torch

    compressed_tensors()
    from compressed_tensors.quantization import (
        QuantizationConfig,
        apply_quantization_config,
        preset_name_to_scheme,
    )
    from compressed_tensors.quantization.utils import calculate_qparams

    config = QuantizationConfig(
        config_groups={"group_0": preset_name_to_scheme(scheme, ["Linear"])}, ignore=list(ignore)
    )
    apply_quantization_config(model, config)
    with torch.no_grad():
        for module in model.modules():
            args = getattr(getattr(module, "quantization_scheme", None), "weights", None)
            if args is None:
                continue
            low, high = _weight_range(module.weight, args)
            scale, zero_point = calculate_qparams(low, high, args)
            module.weight_scale.copy_(scale.reshape(module.weight_scale.shape))
            if hasattr(module, "weight_zero_point"):
                module.weight_zero_point.copy_(zero_point.reshape(module.weight_zero_point.shape))


def _weight_range(weight: Any, args: Any) -> tuple[Any, Any]:
    strategy = str(getattr(args.strategy, "value", args.strategy))
    if strategy == "channel":
        return weight.amin(1, keepdim=True), weight.amax(1, keepdim=True)
    if strategy == "group":
        if weight.shape[1] % args.group_size:
            raise UserInputError(
                f"quantization.scheme: a Linear with {weight.shape[1]} inputs does not split into "
                f"groups of {args.group_size}; add it to quantization.ignore"
            )
        groups = weight.unflatten(-1, (-1, args.group_size))
        return groups.amin(-1), groups.amax(-1)
    if strategy == "tensor":
        return weight.amin().reshape(1), weight.amax().reshape(1)
    raise UserInputError(f"quantization.scheme: weight strategy '{strategy}' is not supported here")


def _oneshot(model: Any, scheme: str, ignore: list[str], calibration: Any | None) -> None:
    try:
        from llmcompressor import oneshot
        from llmcompressor.modifiers.quantization import QuantizationModifier
    except ImportError as exc:
        raise MissingDependencyError(
            f"quantization.tool llmcompressor: Python package 'llmcompressor' is not importable: {exc}",
            hint=LLMCOMPRESSOR_INSTALL,
        ) from exc
    from datasets import Dataset

    rows = {
        "input_ids": [w.tolist() for w in calibration],
        "attention_mask": [[1] * calibration.shape[1]] * len(calibration),
    }
    oneshot(
        model=model,
        dataset=Dataset.from_dict(rows),
        recipe=QuantizationModifier(targets="Linear", scheme=scheme, ignore=list(ignore)),
        max_seq_length=int(calibration.shape[1]),
        num_calibration_samples=len(calibration),
    )
