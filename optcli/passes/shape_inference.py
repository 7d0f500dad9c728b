"""Annotate every intermediate tensor with its shape and type (helps later passes and quantizers)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from optcli.passes.base import GraphPass, Tolerance
from optcli.strict import StrictModel


class ShapeInferenceOptions(StrictModel):
    name: Literal["shape_inference"] = "shape_inference"
    data_prop: bool = Field(True, description="Propagate constant shape values through Shape/Gather ops.")


def apply(src: Path, dst: Path, options: ShapeInferenceOptions) -> str:
    import onnx

    from optcli.onnx_io import load_model, save_model

    model = load_model(src)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=options.data_prop)
    save_model(inferred, dst)
    return f"{len(inferred.graph.value_info)} intermediate tensors typed"


PASS = GraphPass(
    name="shape_inference",
    options=ShapeInferenceOptions,
    apply=apply,
    tolerance=Tolerance(min_cosine=0.999999, max_rel_l2=1e-6),
    summary="ONNX shape inference: annotate intermediate tensors with shapes and types.",
)
