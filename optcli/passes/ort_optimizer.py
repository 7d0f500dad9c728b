"""ONNX Runtime's offline graph optimization: the fused graph ORT would build at session start, saved."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from optcli.onnx_io import load_model
from optcli.passes.base import GraphPass, Tolerance
from optcli.strict import StrictModel

GraphLevel = Literal["basic", "extended", "all"]


class OrtOptimizeOptions(StrictModel):
    name: Literal["ort_optimize"] = "ort_optimize"
    level: GraphLevel = Field(
        "basic",
        description="ORT optimization level. 'basic' is portable across execution providers; "
        "'extended'/'all' add CPU-specific fused ops (com.microsoft domain) that other runtimes "
        "(TensorRT) and quantizers may not accept.",
    )


def ort_level(level: str):
    import onnxruntime as ort

    return {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]


def apply(src: Path, dst: Path, options: OrtOptimizeOptions) -> str:
    import onnxruntime as ort

    before = len(load_model(src, load_external_data=False).graph.node)
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort_level(options.level)
    session_options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), session_options, providers=["CPUExecutionProvider"])
    after = len(load_model(dst, load_external_data=False).graph.node)
    return f"nodes {before} -> {after} (level {options.level})"


PASS = GraphPass(
    name="ort_optimize",
    options=OrtOptimizeOptions,
    apply=apply,
    tolerance=Tolerance(min_cosine=0.99999, max_rel_l2=1e-4),
    summary="ONNX Runtime offline graph optimization (fusions ORT applies at load, saved to disk).",
)
