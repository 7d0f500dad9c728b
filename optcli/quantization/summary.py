"""Which precision each compute node of a Q/DQ model runs in, counted per op type."""

from __future__ import annotations

from collections import Counter, defaultdict

import onnx

_QDQ_TYPES = {
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "int8",
    onnx.TensorProto.FLOAT8E4M3FN: "fp8",
    onnx.TensorProto.INT4: "int4",
    onnx.TensorProto.UINT4: "int4",
}
_PLUMBING = {"QuantizeLinear", "DequantizeLinear", "Cast", "Constant"}
_WITH_BIAS = {"Conv", "Gemm", "ConvTranspose"}
_WEIGHTED = {"Conv", "Gemm", "ConvTranspose", "MatMul"}  # fused into integer kernels even without an output Q
_FLOATS = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def precision_by_op(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """{op_type: {precision: count}}. A node runs quantized when every float input it computes with
    (bias excluded) comes from a DequantizeLinear and, for ops without weights (pooling, Add...),
    every output is re-quantized: the patterns Q/DQ-aware runtimes fuse into integer/FP8 kernels.
    Other nodes run in their output's float type."""
    types = _elem_types(model)
    produced_by = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            consumers[name].append(node)
    counts: dict[str, Counter] = defaultdict(Counter)
    for node in model.graph.node:
        if node.op_type in _PLUMBING:
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
        counts[node.op_type][precision] += 1
    return {op: dict(sorted(c.items())) for op, c in sorted(counts.items())}


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    values = [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]
    types = {v.name: v.type.tensor_type.elem_type for v in values}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    return types
