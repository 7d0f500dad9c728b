"""Quantize a causal LM in place into a compressed-tensors scheme (FP8_DYNAMIC, W8A8, W4A16).

compressed-tensors: the preset scheme is attached to every Linear but the ignored ones, and each
weight's scale (and zero point) comes from its own range per channel or group: round to nearest.
The three schemes quantize activations dynamically per token (or not at all), so this needs no
calibration data. llmcompressor: its `oneshot` on the calibration windows, with GPTQModifier for the
integer-weight schemes (W8A8, W4A16: each layer's rounding error is compensated on the calibration
activations) and QuantizationModifier for FP8_DYNAMIC (data-free, as llmcompressor's own FP8 example).
The presets' activations stay dynamic either way. llmcompressor pins transformers<=5.17 and
compressed-tensors 0.19, so it needs an environment of its own (scripts/llm_venv.sh makes one).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

from optcli.errors import MissingDependencyError, UserInputError
from optcli.llm.checkpoint import COMPRESSED_TENSORS, TRANSFORMERS, compressed_tensors
from optcli.optional import OptionalPackage

LLMCOMPRESSOR_INSTALL = (
    "run optcli from an environment of its own: scripts/llm_venv.sh (in the optcli checkout) builds "
    "one and prints its python, or pip install 'optcli[llmcompressor]' into a fresh venv (llmcompressor "
    "0.14 pins transformers<=5.17 and compressed-tensors 0.19: not beside optcli[llm]); or use "
    "quantization.tool: compressed-tensors"
)
LLMCOMPRESSOR = OptionalPackage("llmcompressor", "llmcompressor", ("llmcompressor",), LLMCOMPRESSOR_INSTALL)
# What `optcli doctor` lists for pipeline: llm.
REQUIRES = (TRANSFORMERS, COMPRESSED_TENSORS, LLMCOMPRESSOR)


@dataclass
class Quantized:
    seconds: float
    peak_rss_mb: float  # the process's peak resident set so far (getrusage)
    quantized_modules: int


def method(tool: str, scheme: str) -> str:
    """How `tool` quantizes `scheme` (recorded in the report and part of the cache key)."""
    if tool != "llmcompressor":
        return "round-to-nearest"
    return f"llmcompressor {'QuantizationModifier' if scheme.startswith('FP8') else 'GPTQModifier'}"


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
    # INFO lines per lifecycle step and "No accelerator available" per call: keep only errors (the
    # user's own LLM_COMPRESSOR_LOG_LEVEL wins); read when llmcompressor is first imported.
    os.environ.setdefault("LLM_COMPRESSOR_LOG_LEVEL", "ERROR")
    try:
        from llmcompressor import oneshot
        from llmcompressor.modifiers.gptq import GPTQModifier
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
    modifier = QuantizationModifier if scheme.startswith("FP8") else GPTQModifier  # as method() says
    oneshot(
        model=model,
        dataset=Dataset.from_dict(rows),
        recipe=modifier(targets="Linear", scheme=scheme, ignore=list(ignore)),
        max_seq_length=int(calibration.shape[1]),
        num_calibration_samples=len(calibration),
    )
