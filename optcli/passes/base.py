"""What every graph pass provides: an options model (its recipe entry), a tolerance, an apply function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from optcli.strict import StrictModel


class Tolerance(StrictModel):
    """How far a transformed model's outputs may move from the reference outputs."""

    min_cosine: float = Field(0.9999, description="Lowest cosine similarity per output.")
    max_rel_l2: float = Field(1e-3, description="Highest relative L2 error per output.")


@dataclass(frozen=True)
class GraphPass:
    """A registered ONNX -> ONNX pass. `apply` reads `src`, writes `dst`, returns a one-line summary.

    `produces_precision` is the precision of the model the pass writes ("fp16" for the FP16
    conversion), None when the pass keeps its input's precision."""

    name: str
    options: type[StrictModel]
    apply: Callable[[Path, Path, StrictModel], str]
    tolerance: Tolerance
    summary: str
    produces_precision: str | None = None
