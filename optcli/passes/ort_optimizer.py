"""ONNX Runtime's offline graph optimization: the fused graph ORT would build at session start, saved."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from optcli.ort_session import create_session
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


def apply(src: Path, dst: Path, options: OrtOptimizeOptions) -> str:
    from optcli.onnx_io import load_model

    before = len(load_model(src, load_external_data=False).graph.node)
    create_session(src, level=options.level, optimized_model=dst)  # ORT writes dst while it loads
    after = len(load_model(dst, load_external_data=False).graph.node)
    return f"nodes {before} -> {after} (level {options.level})"


PASS = GraphPass(
    name="ort_optimize",
    options=OrtOptimizeOptions,
    apply=apply,
    tolerance=Tolerance(min_cosine=0.99999, max_rel_l2=1e-4),
    summary="ONNX Runtime offline graph optimization (fusions ORT applies at load, saved to disk).",
)
