"""Graph patterns that change how a model should be quantized (transformer blocks)."""

from __future__ import annotations

import onnx

_ATTENTION_OPS = {"Attention", "MultiHeadAttention", "GroupQueryAttention"}
# Ops that may sit between the attention-score MatMul and its Softmax (scale, mask) or after it.
_SCORE_CHAIN = {"Add", "Mul", "Div", "Sub", "Where", "Cast", "Reshape", "Dropout", "Identity"}
_MATMULS = {"MatMul", "Einsum"}
TRANSFORMER_OP_TYPES = ("MatMul", "Gemm")
_NORMS = {"LayerNormalization", "ReduceMean", "SimplifiedLayerNormalization"}


def _has_attention(nodes: list[onnx.NodeProto]) -> bool:
    """Some Softmax fed by a MatMul (Q·Kᵀ) and feeding a MatMul (·V), a few scale/mask ops apart."""
    producer = {out: node for node in nodes for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def near_matmul(tensor: str, forward: bool) -> bool:
        frontier = [tensor]
        for _ in range(4):
            found = [
                n for t in frontier for n in (consumers.get(t, []) if forward else [producer.get(t)]) if n
            ]
            if any(n.op_type in _MATMULS for n in found):
                return True
            frontier = [
                t for n in found if n.op_type in _SCORE_CHAIN for t in (n.output if forward else n.input)
            ]
        return False

    return any(
        n.op_type == "Softmax" and near_matmul(n.input[0], False) and near_matmul(n.output[0], True)
        for n in nodes
    )


def looks_like_transformer(model: onnx.ModelProto) -> bool:
    """Attention (MatMul -> Softmax -> MatMul, or a fused attention op) plus a normalization
    (LayerNormalization, or ReduceMean as in decomposed LayerNorm/RMSNorm). A CNN whose head has
    MatMul, Softmax and global-average-pool ReduceMean does not match: its Softmax feeds no MatMul."""
    for nodes in [list(model.graph.node), *(list(f.node) for f in model.functions)]:
        ops = {node.op_type for node in nodes}
        normalized = bool(ops & {"LayerNormalization", "ReduceMean", "SimplifiedLayerNormalization"})
        if normalized and (ops & _ATTENTION_OPS or _has_attention(nodes)):
            return True
    return False


def transformer_summary(model: onnx.ModelProto) -> str | None:
    """A one-line reason when the graph has transformer blocks, else None (for the report)."""
    if not looks_like_transformer(model):
        return None
    ops = [n.op_type for n in model.graph.node]
    return (
        f"transformer blocks detected ({ops.count('Softmax')} Softmax, "
        f"{sum(ops.count(op) for op in _NORMS)} normalizations, {ops.count('MatMul')} MatMul)"
    )
