"""FP16 conversion of weights and compute, keeping FP32 graph inputs and outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from optcli.passes.base import GraphPass, Tolerance
from optcli.strict import StrictModel


class Fp16Options(StrictModel):
    name: Literal["fp16"] = "fp16"
    keep_io_types: bool = Field(True, description="Keep FP32 graph inputs/outputs (casts at the edges).")
    op_block_list: list[str] = Field(
        default_factory=list,
        description="Extra op types to keep in FP32 (added to ORT's default list).",
    )


def apply(src: Path, dst: Path, options: Fp16Options) -> str:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    from onnxruntime.transformers.onnx_model import OnnxModel

    from optcli.onnx_io import load_model, save_model

    model = load_model(src)
    converted = convert_float_to_float16(
        model,
        keep_io_types=options.keep_io_types,
        op_block_list=list(DEFAULT_OP_BLOCK_LIST) + options.op_block_list,
        disable_shape_infer=False,
    )
    # The converter appends its boundary Casts at the end of the node list; the ONNX spec (and
    # onnx.checker, TensorRT's parser) require topological order.
    OnnxModel(converted).topological_sort()
    save_model(converted, dst)
    casts = sum(1 for node in converted.graph.node if node.op_type == "Cast")
    return f"converted to FP16 ({casts} Cast nodes at FP32 boundaries)"


PASS = GraphPass(
    name="fp16",
    options=Fp16Options,
    apply=apply,
    tolerance=Tolerance(min_cosine=0.999, max_rel_l2=1e-2),
    summary="FP16 weights and compute via onnxruntime.transformers.float16, FP32 inputs/outputs kept.",
    produces_precision="fp16",
)
