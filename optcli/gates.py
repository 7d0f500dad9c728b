"""Gate expressions ('>= 0.999') and their evaluation into pass / fail / inconclusive records."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Literal

_EXPR = re.compile(r"^\s*(>=|<=|>|<|==)\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*$")
_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}

Status = Literal["pass", "fail", "inconclusive"]

# Which metrics each gate family may name, and what they mean (for errors and docs).
VALIDATION_METRICS = {
    "cosine": "lowest cosine similarity to the baseline over outputs",
    "cosine_min": "lowest cosine similarity of any single sample (worst sample, worst output)",
    "max_abs": "largest absolute difference to the baseline over outputs",
    "rel_l2": "largest relative L2 error over outputs",
    "snr_db": "lowest signal-to-noise ratio (dB) over outputs",
    "snr_db_min": "lowest signal-to-noise ratio (dB) of any single sample",
    "top1_agreement": "fraction of samples whose top-1 class matches the baseline",
    "accuracy": "task top-1 accuracy on labelled validation data",
    "accuracy_drop": "baseline accuracy minus candidate accuracy (labelled data)",
    "auc": "ROC AUC of a one-score-per-sample output (CTR) on 0/1 labels (bucketed, error bound reported)",
    "auc_drop": "baseline AUC minus candidate AUC (0/1 labels)",
    "logloss": "mean binary log loss on 0/1 labels",
    "logloss_increase": "candidate log loss minus baseline log loss (0/1 labels)",
    "calibration": "mean predicted CTR / observed CTR (0/1 labels; 1 is calibrated)",
}
LATENCY_METRICS = {  # benchmark.mode: latency
    "speedup": "baseline p50 latency / engine p50 latency, per batch size",
    "p50_ms": "median latency in milliseconds",
    "p99_ms": "99th percentile latency in milliseconds",
    "throughput": "measured samples per second (samples / wall time of the timed runs)",
}
SLO_METRICS = {  # benchmark.mode: slo
    "slo_throughput": "samples/s at the largest batch (and threads) whose p99 meets benchmark.slo.p99_ms",
    "slo_speedup": "slo_throughput / the baseline's slo_throughput",
}
BENCHMARK_METRICS = {**LATENCY_METRICS, **SLO_METRICS}


# Metrics that only get worse as samples are added, and the gate directions a failure of which is
# therefore final: a running minimum below a `>=` threshold stays below it. Validation stops running
# an engine once one of these gates has failed (validate.stop_early).
SETTLING_METRICS = {"cosine_min": (">=", ">"), "snr_db_min": (">=", ">"), "max_abs": ("<=", "<")}


def settling_gates(gates: dict[str, str]) -> dict[str, str]:
    """The gates whose failure more samples cannot undo."""
    return {m: e for m, e in gates.items() if Threshold.parse(e).op in SETTLING_METRICS.get(m, ())}


def settled_failure(summary: dict[str, float], gates: dict[str, str]) -> str | None:
    """Which gate can no longer pass on these running metrics (NaN/Inf outputs fail every gate), or
    None. `gates` come from settling_gates."""
    if summary.get("non_finite") or summary.get("baseline_non_finite"):
        return "validate.finite"
    if not summary.get("values"):
        return None  # nothing compared yet
    for metric, expr in gates.items():
        value = summary.get(metric)
        if value is not None and not Threshold.parse(expr).holds(value):
            return f"validate.{metric}"
    return None


def _finite(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


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

    @classmethod
    def of(cls, value: Threshold | str | dict[str, Any]) -> Threshold:
        """From an expression, a report record ({op, value}) or a Threshold."""
        if isinstance(value, Threshold):
            return value
        if isinstance(value, dict):
            return cls(str(value["op"]), float(value["value"]))
        return cls.parse(value)

    def holds(self, value: float | None) -> bool:
        if not _finite(value):
            return False
        return bool(_OPS[self.op](value, self.value))

    def decide(self, interval: tuple[float, float]) -> Status:
        """On a confidence interval: pass if every value in it holds, fail if none does, else
        inconclusive (the measurement cannot tell which side of the threshold the truth is on)."""
        lo, hi = interval
        if not (_finite(lo) and _finite(hi)):
            return "fail"
        if self.holds(lo) and self.holds(hi):
            return "pass"
        if self.op == "==":
            return "inconclusive" if lo <= self.value <= hi else "fail"
        return "fail" if not self.holds(lo) and not self.holds(hi) else "inconclusive"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "value": self.value}

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
    """`passed` is what the exit code uses; `status` is what was measured. They differ only for an
    inconclusive gate that the recipe lets pass (benchmark.inconclusive: pass)."""

    name: str
    engine: str
    value: float | None
    threshold: Threshold
    passed: bool
    detail: str = ""
    counts: bool = True  # False: informational (a candidate --target did not choose)
    status: Status | None = None  # None: from `passed`
    interval: tuple[float, float] | None = None  # 95% interval the gate was decided on

    def __post_init__(self) -> None:
        self.threshold = Threshold.of(self.threshold)
        if self.status is None:
            self.status = "pass" if self.passed else "fail"
        if self.interval is not None:
            self.interval = (float(self.interval[0]), float(self.interval[1]))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GateResult:
        """The inverse of to_dict (cached gate records)."""
        return cls(**{k: v for k, v in data.items() if k != "threshold_text"})

    def to_dict(self) -> dict[str, Any]:
        data = {
            "name": self.name,
            "engine": self.engine,
            "value": self.value,
            "status": self.status,
            "passed": self.passed,
            "detail": self.detail,
            "counts": self.counts,
            "threshold": self.threshold.to_dict(),
            "threshold_text": str(self.threshold),
        }
        if self.interval is not None:
            data["interval"] = list(self.interval)
        return data


def evaluate(
    name: str, engine: str, value: float | None, expr: str, detail: str = "", *, problem: str | None = None
) -> GateResult:
    """`problem`: a reason the gate fails whatever the value (e.g. NaN/Inf outputs); it leads the detail."""
    threshold = Threshold.parse(expr)
    if problem:
        detail = f"{problem}; {detail}" if detail else problem
    return GateResult(name, engine, value, threshold, threshold.holds(value) and not problem, detail)


def evaluate_interval(
    name: str,
    engine: str,
    value: float | None,
    interval: tuple[float, float] | None,
    expr: str,
    detail: str = "",
    *,
    inconclusive_passes: bool = False,
) -> GateResult:
    """A gate on a measured value decided on its 95% interval (the point value when there is none)."""
    threshold = Threshold.parse(expr)
    if interval is None:
        status: Status = "pass" if threshold.holds(value) else "fail"
    else:
        status = threshold.decide(interval)
    passed = status == "pass" or (status == "inconclusive" and inconclusive_passes)
    return GateResult(name, engine, value, threshold, passed, detail, status=status, interval=interval)


def engine_gates(shared: dict[str, str], own: dict[str, str], family: dict[str, str]) -> dict[str, str]:
    """A stage's gates, overridden or extended by one engine's own `gates` of the same family."""
    return {**shared, **{metric: expr for metric, expr in own.items() if metric in family}}
