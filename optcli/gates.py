"""Gate expressions ('>= 0.999') and their evaluation into pass/fail records."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import asdict, dataclass

_EXPR = re.compile(r"^\s*(>=|<=|>|<|==)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}

# Which metrics each gate family may name, and what they mean (for errors and docs).
VALIDATION_METRICS = {
    "cosine": "lowest cosine similarity to the baseline over outputs",
    "max_abs": "largest absolute difference to the baseline over outputs",
    "rel_l2": "largest relative L2 error over outputs",
    "snr_db": "lowest signal-to-noise ratio (dB) over outputs",
    "top1_agreement": "fraction of samples whose top-1 class matches the baseline",
    "accuracy": "task top-1 accuracy on labelled validation data",
    "accuracy_drop": "baseline accuracy minus candidate accuracy (labelled data)",
}
BENCHMARK_METRICS = {
    "speedup": "baseline p50 latency / engine p50 latency, per batch size",
    "p50_ms": "median latency in milliseconds",
    "p99_ms": "99th percentile latency in milliseconds",
    "throughput": "samples per second",
}


@dataclass(frozen=True)
class Threshold:
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _EXPR.match(str(text))
        if not match:
            raise ValueError(f"gate '{text}' is not '<op> <number>' with op one of >=, <=, >, <, ==")
        return cls(match.group(1), float(match.group(2)))

    def holds(self, value: float | None) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        return bool(_OPS[self.op](value, self.value))

    def __str__(self) -> str:
        return f"{self.op} {self.value:.12g}"


def check_gate_names(gates: dict[str, str], allowed: dict[str, str]) -> dict[str, str]:
    for name, expr in gates.items():
        if name not in allowed:
            raise ValueError(f"unknown gate '{name}'; known: {', '.join(allowed)}")
        Threshold.parse(expr)
    return gates


@dataclass
class GateResult:
    name: str
    engine: str
    value: float | None
    threshold: str
    passed: bool
    detail: str = ""
    counts: bool = True  # False: informational (a candidate --target did not choose)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate(
    name: str, engine: str, value: float | None, expr: str, detail: str = "", *, problem: str | None = None
) -> GateResult:
    """`problem`: a reason the gate fails whatever the value (e.g. NaN/Inf outputs); it leads the detail."""
    threshold = Threshold.parse(expr)
    if problem:
        detail = f"{problem}; {detail}" if detail else problem
    return GateResult(name, engine, value, str(threshold), threshold.holds(value) and not problem, detail)


def engine_gates(shared: dict[str, str], own: dict[str, str], family: dict[str, str]) -> dict[str, str]:
    """A stage's gates, overridden or extended by one engine's own `gates` of the same family."""
    return {**shared, **{metric: expr for metric, expr in own.items() if metric in family}}
