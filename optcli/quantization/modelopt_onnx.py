"""INT8 / FP8 (E4M3) Q/DQ quantization with NVIDIA ModelOpt (`modelopt.onnx.quantization.quantize`).

ModelOpt places Q/DQ nodes the way TensorRT fuses them (symmetric, per-channel weights; GEMV and
small-GEMM MatMuls left in float). Calibration runs in ONNX Runtime on the CPU
(`calibration_eps=["cpu"]`), so no GPU is needed to quantize. Written against nvidia-modelopt 0.47:
argument names and behaviours cited below are from that release.
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import importlib.util
import io
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optcli.backends.base import Unavailable
from optcli.errors import StageError, UserInputError
from optcli.optional import OptionalPackage
from optcli.quantization.registry import Quantizer
from optcli.quiet import quiet_loggers

if TYPE_CHECKING:  # the settings only in annotations: settings.py reads the registry
    from optcli.calibration import Batch
    from optcli.quantization.settings import QuantizationSettings

MODULE = "modelopt.onnx.quantization"
MODELOPT = OptionalPackage("nvidia-modelopt", MODULE, ("nvidia-modelopt",), "pip install 'optcli[modelopt]'")
# Our calibration methods -> ModelOpt's (0.47 offers only these two for int8/fp8). With symmetric
# activations ModelOpt's "max" is ORT's MinMax calibrator, so it is our minmax.
METHODS = {"minmax": "max", "entropy": "entropy"}
LOGGERS = ("modelopt", "modelopt.onnx")

log = logging.getLogger(__name__)


def unavailable(settings: QuantizationSettings) -> Unavailable | None:
    try:
        importlib.import_module(MODULE)
    except ImportError as exc:
        # modelopt.onnx raises ImportError when its ONNX dependencies (onnx_graphsurgeon, onnxslim,
        # lief, nvidia-ml-py) are missing even though modelopt itself is installed.
        installed = importlib.util.find_spec("modelopt") is not None
        detail = f" with its ONNX dependencies ({str(exc).splitlines()[0]})" if installed else ""
        return Unavailable(f"nvidia-modelopt is not installed{detail}", MODELOPT.install)
    return None


def _refuse(settings: QuantizationSettings) -> None:
    """What ModelOpt cannot honour beyond its precisions and methods (declared in QUANTIZER)."""
    if not settings.per_channel:
        raise UserInputError(
            "quantization.per_channel: false is not available with quantizer: modelopt "
            "(ModelOpt always quantizes weights per output channel)",
            hint="set per_channel: true, or use quantizer: onnxruntime",
        )


def _check(settings: QuantizationSettings) -> str:
    """ModelOpt's argument for our calibration method; refuse settings ModelOpt cannot honour."""
    QUANTIZER.check(settings)
    return METHODS[settings.resolved_method()]


def _collect(batches: Iterator[Batch], names: list[str], samples: int) -> tuple[dict, str, int, int]:
    """Gather up to `samples` samples as one array per input, plus ModelOpt's per-step shape spec.

    ModelOpt needs the calibration arrays in memory (`calibration_data` is an array or a dict of
    arrays that it splits back into batches), so unlike the onnxruntime quantizer the stream is
    materialized: memory grows with samples x per-sample input size.
    """
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    seen = count = step = 0
    for batch in batches:
        take = min(len(batch[names[0]]), samples - count)
        for name in names:
            parts[name].append(np.asarray(batch[name])[:take])
        step = step or take
        seen, count = seen + 1, count + take
        if count >= samples:
            break
    if count == 0:
        raise UserInputError("quantization.calibration.data gave no samples")
    try:
        data = {name: np.concatenate(parts[name]) for name in names}
    except ValueError as exc:
        raise UserInputError(
            f"quantizer: modelopt needs calibration batches of one shape apart from the batch size: {exc}",
            hint="pad calibration inputs to one length, or use quantizer: onnxruntime",
        ) from exc
    # Without a shape spec ModelOpt calibrates one sample per step and its GEMV check sees batch 1
    # (then leaves 2-D Gemms in float); calibrate with the recipe's batch size instead.
    shapes = ",".join(f"{name}:" + "x".join(str(d) for d in (step, *data[name].shape[1:])) for name in names)
    return data, shapes, seen, count


class _DropNvmlError(logging.Filter):
    """ModelOpt 0.47 logs 'Failed to get GPU count' at ERROR on every MinMax calibration without NVML."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to get GPU count")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep ModelOpt's chatter off the console, passing on only its warnings and errors.

    ModelOpt resets the 'modelopt.onnx' level from its log_level argument (quiet_loggers alone cannot
    hold it down) and logs through a handler it creates on sys.stdout; ORT's histogram calibrators
    print(), ModelOpt's patched ones draw tqdm bars on stderr, onnx_graphsurgeon print()s warnings.
    All of that is captured; on failure it is shown in full, since it may explain the error.
    """
    buffer, nvml = io.StringIO(), _DropNvmlError()
    logging.getLogger("modelopt.onnx").addFilter(nvml)
    try:
        with (
            quiet_loggers(*LOGGERS, level=logging.WARNING),
            contextlib.redirect_stdout(buffer),
            contextlib.redirect_stderr(buffer),
        ):
            yield
    except BaseException:
        sys.stderr.write(buffer.getvalue())
        raise
    finally:
        logging.getLogger("modelopt.onnx").removeFilter(nvml)
    for line in buffer.getvalue().splitlines():
        if " - WARNING - " in line or " - ERROR - " in line:
            log.warning("modelopt: %s", line.split(" - ", 3)[-1])


@contextlib.contextmanager
def _ort_left_as_found() -> Iterator[None]:
    """Undo ModelOpt's process-wide patches to onnxruntime.quantization when its quantize() returns.

    ModelOpt 0.47 (ort_utils.configure_ort -> ort_patching.patch_ort_modules, re-applied on every
    call) replaces calibrator and quantizer methods (CalibraterBase.__init__, MinMaxCalibrater.*,
    BaseQuantizer.adjust_tensor_ranges, ...), calibrate.create_calibrator, and edits the QDQ/QLinear
    registries. Left in place, the onnxruntime quantizer then fails in the same process ("Quantization
    parameters are not specified for param x").
    """
    from onnxruntime.quantization import base_quantizer, calibrate, onnx_quantizer, qdq_quantizer, registry

    modules = (calibrate, base_quantizer, onnx_quantizer, qdq_quantizer, registry)
    classes = [
        v for m in modules for v in vars(m).values() if isinstance(v, type) and v.__module__ == m.__name__
    ]
    saved = [(owner, dict(vars(owner))) for owner in (*modules, *classes)]
    tables = [(t, dict(t)) for name, t in vars(registry).items() if name.endswith("Registry")]
    try:
        yield
    finally:
        for owner, attrs in saved:
            added = set(vars(owner)) - set(attrs) if isinstance(owner, type) else set()
            for name in added:
                delattr(owner, name)
            for name, value in attrs.items():
                if vars(owner).get(name) is not value:
                    setattr(owner, name, value)
        for table, items in tables:
            table.clear()
            table.update(items)


def quantize(
    src: Path,
    dst: Path,
    settings: QuantizationSettings,
    batches: Iterator[Batch],
    input_names: list[str],
    *,
    cache: object | None = None,  # optcli's statistics cache: unused, ModelOpt calibrates itself
) -> dict[str, Any]:
    from optcli.onnx_io import load_model, node_precision_counts, save_model
    from optcli.quantization.selectors import select_nodes

    method = _check(settings)
    with quiet_loggers(*LOGGERS, level=logging.WARNING):
        modelopt = importlib.import_module("modelopt")
        moq = importlib.import_module(MODULE)
    excluded, unmatched = select_nodes(
        load_model(src, load_external_data=False),
        names=settings.exclude.nodes,
        modules=settings.exclude.modules,
    )
    data, shapes, seen, count = _collect(batches, input_names, settings.calibration.samples)
    work = Path(tempfile.mkdtemp(prefix=".modelopt-", dir=dst.parent))
    out = work / dst.name  # ModelOpt also writes its intermediate models next to output_path
    try:
        with _quiet(), _ort_left_as_found():
            moq.quantize(
                str(src),
                quantize_mode=settings.precision,
                calibration_data=data,
                calibration_shapes=shapes,
                calibration_method=method,
                calibration_eps=["cpu"],
                # Given op types replace ModelOpt's TensorRT-aware placement: every such node gets Q/DQ.
                op_types_to_quantize=list(settings.op_types) if settings.op_types else None,
                op_types_to_exclude=list(settings.exclude.op_types) or None,
                # Regexes to ModelOpt (re.match): the names we selected, and the globs themselves
                # (fnmatch.translate anchors the whole name) for nodes ModelOpt names on the way.
                nodes_to_exclude=[re.escape(n) + r"\Z" for n in excluded]
                + [fnmatch.translate(p) for p in settings.exclude.nodes],
                # fp32, not ModelOpt's default fp16: ORT's CPU provider lacks FP16 kernels for some ops
                # and validation here runs on CPU. TensorRT takes either.
                high_precision_dtype="fp32",
                output_path=str(out),
                log_level="WARNING",
            )
        if (work / (dst.name + "_data")).exists():
            # Over 2 GB ModelOpt writes '<name>_data'; re-save in optcli's layout ('<name>.data').
            save_model(load_model(out), dst, external_data=True)
        else:
            os.replace(out, dst)
    except (AssertionError, ValueError, RuntimeError) as exc:  # how ModelOpt and ORT reject a model
        raise StageError(
            f"modelopt quantization failed: {exc}", hint="try quantizer: onnxruntime; --debug shows the trace"
        ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    model = load_model(dst, load_external_data=False)
    counts = node_precision_counts(model)
    dq_outputs = {o for node in model.graph.node if node.op_type == "DequantizeLinear" for o in node.output}
    quantized = [
        n for n in model.graph.node if n.op_type != "QuantizeLinear" and any(i in dq_outputs for i in n.input)
    ]
    return {
        "quantizer": "modelopt",
        "modelopt_version": getattr(modelopt, "__version__", "unknown"),
        "precision": settings.precision,
        "calibration_method": settings.resolved_method(),
        "modelopt_calibration_method": method,
        "activations": "symmetric (signed)",  # ModelOpt's only mode (TensorRT needs it)
        "per_channel": True,
        "calibration_batches": seen,
        "calibration_samples": count,
        "calibration_shapes": shapes,
        "high_precision_dtype": "fp32",
        "excluded_nodes": excluded,
        "unmatched_exclude_patterns": unmatched,
        "quantized_nodes": len(quantized),
        "qdq_nodes": counts.get("QuantizeLinear", 0) + counts.get("DequantizeLinear", 0),
    }


QUANTIZER = Quantizer(
    name="modelopt",
    quantize=quantize,
    precisions=frozenset({"int8", "fp8"}),
    methods=frozenset({"auto", *METHODS}),  # auto = minmax
    unavailable=unavailable,
    refuse=_refuse,
    requires=(MODELOPT,),
    summary="NVIDIA ModelOpt ONNX PTQ: TensorRT-style Q/DQ placement, INT8 and FP8 E4M3, CPU calibration",
)
