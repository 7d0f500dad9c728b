"""The onnxscript optimizer: constant folding, dead-code removal and its default fusion rewrites."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from optcli.passes.base import GraphPass, Tolerance
from optcli.strict import StrictModel


class OnnxscriptOptions(StrictModel):
    name: Literal["onnxscript_optimize"] = "onnxscript_optimize"
    num_iterations: int = Field(2, ge=1, le=10, description="Rounds of folding and rewriting.")


def apply(src: Path, dst: Path, options: OnnxscriptOptions) -> str:
    import onnxscript.optimizer

    from optcli.onnx_io import load_model, save_model

    model = load_model(src)
    before = len(model.graph.node)
    optimized = onnxscript.optimizer.optimize(model, num_iterations=options.num_iterations)
    save_model(optimized, dst)
    return f"nodes {before} -> {len(optimized.graph.node)}"


PASS = GraphPass(
    name="onnxscript_optimize",
    options=OnnxscriptOptions,
    apply=apply,
    tolerance=Tolerance(min_cosine=0.99999, max_rel_l2=1e-4),
    summary="onnxscript optimizer: constant folding, dead code elimination, pattern fusions.",
)
