"""Which precision each compute node of a Q/DQ model runs in, and what share of the compute that is.

The precision an artifact is reported with comes from here, not from the recipe: a model whose
quantizer (or accuracy recovery) left every Conv/MatMul in floating point is an FP32 model.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx

_QDQ_TYPES = {
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "int8",
    onnx.TensorProto.FLOAT8E4M3FN: "fp8",
    onnx.TensorProto.INT4: "int4",
    onnx.TensorProto.UINT4: "int4",
}
QUANTIZED = frozenset(_QDQ_TYPES.values())
_PLUMBING = {"QuantizeLinear", "DequantizeLinear", "Cast", "Constant"}
_WITH_BIAS = {"Conv", "Gemm", "ConvTranspose"}
_WEIGHTED = {"Conv", "Gemm", "ConvTranspose", "MatMul"}  # fused into integer kernels even without an output Q
_INTEGER_OPS = {"QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}  # QOperator format
_COMPUTE = _WEIGHTED | _INTEGER_OPS  # what "share of the compute" counts
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


@dataclass
class ArtifactPrecision:
    """What an ONNX artifact runs in: `precision` is the quantized type carrying most of the compute,
    or the float type when no compute op is quantized; `quantized_share` is the share of the compute
    (MACs at the recipe's typical dims, or compute-op count when shapes are unknown) in INT8/FP8/INT4."""

    precision: str
    requested: str
    quantized_share: float
    basis: str  # "MACs", "compute ops" or "ops" (a graph without Conv/MatMul/Gemm)
    by_op: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.precision in QUANTIZED:
            percent = 100 * self.quantized_share  # rounded down: 100% only when everything is quantized
            shown = f"{math.floor(percent):.0f}" if percent >= 1 else f"{percent:.2g}"
            return f"{self.precision} ({shown}% of {self.basis})"
        if self.requested in QUANTIZED:
            return f"{self.precision} (no {self.requested} compute op)"
        return self.precision

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("by_op")
        return {**data, "label": self.label}


def artifact_precision(path: Path, requested: str, sizes: dict[str, int]) -> ArtifactPrecision:
    """Read the artifact at `path`; `sizes` fixes the graph's named dims for counting MACs."""
    model = onnx.load(str(path), load_external_data=False)
    _fix_input_dims(model, sizes)
    types, shapes = _infer(model)
    nodes = node_precisions(model, types)
    by_op: dict[str, Counter] = defaultdict(Counter)
    for node, precision in nodes:
        by_op[node.op_type][precision] += 1
    compute = [(node, precision) for node, precision in nodes if node.op_type in _COMPUTE]
    weights = [_macs(node, shapes) for node, _ in compute]
    if compute and all(w for w in weights):
        basis = "MACs"
    elif compute:
        basis, weights = "compute ops", [1] * len(compute)
    else:
        basis, compute, weights = "ops", nodes, [1] * len(nodes)
    per_precision: Counter = Counter()
    for (_, precision), weight in zip(compute, weights):
        per_precision[precision] += weight
    total = sum(per_precision.values())
    quantized = {p: w for p, w in per_precision.items() if p in QUANTIZED}
    share = sum(quantized.values()) / total if total else 0.0
    if quantized:
        precision = max(quantized, key=quantized.get)
    else:
        precision = "fp16" if per_precision.get("fp16", 0) > per_precision.get("fp32", 0) else "fp32"
    summary = {op: dict(sorted(c.items())) for op, c in sorted(by_op.items())}
    return ArtifactPrecision(precision, requested, round(share, 6), basis, summary)


def precision_by_op(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """{op_type: {precision: count}} (see node_precisions)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for node, precision in node_precisions(model, _infer(model)[0]):
        counts[node.op_type][precision] += 1
    return {op: dict(sorted(c.items())) for op, c in sorted(counts.items())}


def node_precisions(model: onnx.ModelProto, types: dict[str, int]) -> list[tuple[onnx.NodeProto, str]]:
    """A node runs quantized when every float input it computes with (bias excluded) comes from a
    DequantizeLinear and, for ops without weights (pooling, Add...), every output is re-quantized:
    the patterns Q/DQ-aware runtimes fuse into integer/FP8 kernels. Other nodes run in their
    output's float type."""
    produced_by = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            consumers[name].append(node)
    result = []
    for node in model.graph.node:
        if node.op_type in _PLUMBING:
            continue
        if node.op_type in _INTEGER_OPS:
            result.append((node, "int8"))
            continue
        if node.op_type == "GatherBlockQuantized":  # a row-wise quantized table: its bits say which
            bits = next((attr.i for attr in node.attribute if attr.name == "bits"), 4)  # the op's default
            result.append((node, "int8" if bits == 8 else "int4"))
            continue
        operands = node.input[:2] if node.op_type in _WITH_BIAS else node.input
        float_inputs = [name for name in operands if name and types.get(name) in _FLOATS | {0}]
        sources = [produced_by.get(name) for name in float_inputs]
        fused = node.op_type in _WEIGHTED or all(  # a weightless op stays integer only between Q/DQ
            any(c.op_type == "QuantizeLinear" for c in consumers.get(out, [])) for out in node.output if out
        )
        if (
            fused
            and float_inputs
            and all(src is not None and src.op_type == "DequantizeLinear" for src in sources)
        ):
            precision = min(_QDQ_TYPES.get(types.get(src.input[0], 0), "int8") for src in sources)
        else:
            output_type = types.get(node.output[0]) if node.output else None
            precision = "fp16" if output_type == onnx.TensorProto.FLOAT16 else "fp32"
        result.append((node, precision))
    return result


def _fix_input_dims(model: onnx.ModelProto, sizes: dict[str, int]) -> None:
    """Named input dims -> the given sizes, so shape inference gives concrete shapes everywhere."""
    for value in model.graph.input:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in sizes:
                dim.dim_value = sizes[dim.dim_param]


def _infer(model: onnx.ModelProto) -> tuple[dict[str, int], dict[str, tuple[int, ...] | None]]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    shapes: dict[str, tuple[int, ...] | None] = {}
    for v in values:
        tensor = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor.shape.dim]
        shapes[v.name] = tuple(dims) if tensor.HasField("shape") and all(dims) else None
    shapes.update({i.name: tuple(i.dims) for i in model.graph.initializer})
    return types, shapes


def _macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...] | None]) -> int | None:
    """Multiply-accumulates of one compute node, or None when a shape is unknown."""
    out = shapes.get(node.output[0]) if node.output else None
    a = shapes.get(node.input[0]) if node.input else None
    w = shapes.get(node.input[3 if node.op_type in ("QLinearConv", "QLinearMatMul") else 1])
    if not out or not a or not w:
        return None
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
        return math.prod(out) * math.prod(w[1:])
    if node.op_type == "ConvTranspose":
        return math.prod(a) * math.prod(w[1:])
    if node.op_type == "Gemm":
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return math.prod(out) * (a[0] if trans_a else a[-1])
    return math.prod(out) * a[-1]  # MatMul family: [..., M, K] x [..., K, N]
