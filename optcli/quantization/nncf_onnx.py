"""INT8 Q/DQ quantization with NNCF (OpenVINO's post-training quantizer) on the ONNX graph.

The result is an ordinary QuantizeLinear/DequantizeLinear ONNX model; OpenVINO turns its Q/DQ pairs
into FakeQuantize and runs INT8 kernels, ONNX Runtime runs it too.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optcli.backends.base import Unavailable
from optcli.optional import OptionalPackage
from optcli.quantization.registry import Quantizer
from optcli.quiet import quiet_loggers

if TYPE_CHECKING:  # onnx and the settings only in annotations: `import optcli.recipe` stays light
    import onnx

    from optcli.calibration import Batch
    from optcli.quantization.settings import QuantizationSettings

NNCF = OptionalPackage("nncf", "nncf", ("nncf",), "pip install 'optcli[openvino]'")


def _materialize(batches: Iterator[Batch], input_names: list[str], samples: int) -> tuple[list[dict], int]:
    """Up to `samples` single-sample feeds. NNCF iterates its dataset more than once (statistics,
    then bias correction), so a one-shot stream cannot be handed over; and one sample per item
    makes NNCF's subset_size count samples and keeps its statistics per sample (NNCF warns that
    batched statistics are inaccurate for transformers)."""
    items: list[dict] = []
    seen = 0
    for batch in batches:
        seen += 1
        size = len(batch[input_names[0]])
        for i in range(min(size, samples - len(items))):
            items.append({name: batch[name][i : i + 1] for name in input_names})
        if len(items) >= samples:
            break
    return items, seen


_TRANSFORMER_REASON = "attention (MatMul->Softmax->MatMul) and LayerNorm/ReduceMean found"
_METHODS = {
    "auto": "NNCF default (per-sample min/max, averaged)",
    "minmax": "minmax (global min/max)",
    "percentile": "percentile (per-sample quantiles, averaged)",
    "entropy": "NNCF histogram (NNCF has no KL/entropy; nearest equivalent)",
}


def _range_estimator(method: str, percentile: float):
    """Recipe calibration method -> NNCF activation range estimator (None: NNCF's default)."""
    from dataclasses import replace

    from nncf.quantization.range_estimator import RangeEstimatorParametersSet as Sets

    if method == "percentile":  # NNCF's quantile estimator with the recipe's tail probability
        q, tail = Sets.MEAN_QUANTILE, {"quantile_outlier_prob": 1 - percentile / 100}
        return replace(q, min=replace(q.min, **tail), max=replace(q.max, **tail))
    return {"minmax": Sets.MINMAX, "entropy": Sets.HISTOGRAM}.get(method)


def _ignored_scope(model: onnx.ModelProto, settings: QuantizationSettings) -> tuple[Any, dict[str, Any]]:
    """exclude.nodes/modules -> node names; exclude.op_types, and for `op_types` every other op type
    of the graph -> NNCF ignored types (NNCF has no allow-list)."""
    import nncf

    from optcli.quantization.selectors import select_nodes

    excluded, unmatched = select_nodes(model, names=settings.exclude.nodes, modules=settings.exclude.modules)
    types = set(settings.exclude.op_types)
    if settings.op_types:
        types |= {node.op_type for node in model.graph.node} - set(settings.op_types)
    # validate=False: an op type the graph lacks is not an error here (it is simply not there).
    scope = nncf.IgnoredScope(names=excluded, types=sorted(types), validate=False)
    details = {"excluded_nodes": excluded, "unmatched_exclude_patterns": unmatched}
    return scope, {**details, "excluded_op_types": sorted(types)}


def quantize(
    src: Path,
    dst: Path,
    settings: QuantizationSettings,
    batches: Iterator[Batch],
    input_names: list[str],
    *,
    cache: object | None = None,  # optcli's statistics cache: unused, NNCF collects its own statistics
) -> dict[str, Any]:
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, QuantizationParameters

    from optcli.onnx_io import load_model, node_precision_counts, save_model
    from optcli.quantization.patterns import looks_like_transformer

    model = load_model(src)
    items, batches_seen = _materialize(batches, input_names, settings.calibration.samples)
    transformer = looks_like_transformer(model)
    symmetric = settings.symmetric_activations
    preset = nncf.QuantizationPreset.PERFORMANCE if symmetric else nncf.QuantizationPreset.MIXED
    scope, scope_details = _ignored_scope(model, settings)
    advanced = AdvancedQuantizationParameters()
    estimator = _range_estimator(settings.calibration.method, settings.calibration.percentile)
    if estimator is not None:
        advanced.activations_range_estimator_params = estimator
    if not settings.per_channel:
        advanced.weights_quantization_params = QuantizationParameters(per_channel=False)
    # NNCF draws its own rich progress bars on stdout; optcli shows its own progress.
    with quiet_loggers("nncf"), contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(
            model,
            nncf.Dataset(items),
            preset=preset,
            target_device=nncf.TargetDevice.CPU,
            subset_size=len(items),
            model_type=nncf.ModelType.TRANSFORMER if transformer else None,
            ignored_scope=scope,
            advanced_parameters=advanced,
        )
    save_model(quantized, dst)
    counts = node_precision_counts(quantized)
    return {
        "quantizer": "nncf",
        "nncf_version": nncf.__version__,
        "quantizer_input": str(src),
        "precision": "int8",
        "calibration_method": _METHODS[settings.calibration.method],
        "preset": preset.value,
        "preset_reason": "symmetric_activations: true" if symmetric else "asymmetric activations (default)",
        "activations": "symmetric (signed)" if symmetric else "asymmetric (unsigned)",
        "model_type": "transformer" if transformer else "default",
        "model_type_reason": _TRANSFORMER_REASON if transformer else "no attention + normalization found",
        "per_channel": settings.per_channel,
        "calibration_batches": batches_seen,
        "calibration_samples": len(items),
        **scope_details,
        "qdq_nodes": counts.get("QuantizeLinear", 0) + counts.get("DequantizeLinear", 0),
    }


def target_settings(settings: QuantizationSettings) -> QuantizationSettings:
    """The settings of `target: cpu`'s second INT8 artifact: the recipe's, with NNCF as the quantizer
    and NNCF's own default estimator (the recipe's method was chosen for its own quantizer, and
    NNCF lacks mse/distribution); no recovery or diagnosis (the mixed candidate does that)."""
    settings = settings.model_copy(
        deep=True, update={"quantizer": "nncf", "accuracy": None, "diagnose": False}
    )
    settings.calibration.method = "auto"
    return settings


def unavailable(settings: QuantizationSettings) -> Unavailable | None:
    if not NNCF.found():
        return Unavailable("nncf is not installed", NNCF.install)
    return None


QUANTIZER = Quantizer(
    name="nncf",
    quantize=quantize,
    precisions=frozenset({"int8"}),
    methods=frozenset(_METHODS),  # NNCF has no mse; 'distribution' is ORT's FP8 fit
    unavailable=unavailable,
    requires=(NNCF,),
    summary="NNCF post-training quantization (OpenVINO's), INT8 Q/DQ; transformer-aware",
)
