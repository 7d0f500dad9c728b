"""Regression rules: relative thresholds between a stored (base) report and a new one.

A rule is `<op> <signed amount>[%]`, e.g. `"<= +5%"` (p50_ms may grow by at most 5% of the base)
or `">= -0.0005"` (cosine may drop by at most 0.0005). With `%` the change is relative to the
base value, `(new - base) / |base|`; without, it is the absolute difference `new - base`.
The rule holds when `change <op> amount`.

Noise: for a metric that carries a 95% interval in both reports (`latency_ms.p50_ci`,
`throughput_ci`, `speedup_ci`), the change is an interval as well, from the most and least
favourable pairing of the two intervals: `[new_lo vs base_hi, new_hi vs base_lo]`. A `<=` rule
fails only when the whole change interval is above the amount (e.g. p50: `new_lo > base_hi *
(1 + 5%)`), a `>=` rule only when the whole interval is below it: a regression counts only when
it is beyond the noise of both runs. Without an interval (an older report, p99, validation
metrics, which are deterministic) the point values decide, and the table says so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pydantic import Field, create_model, field_validator

from optcli.gates import LATENCY_METRICS as MEASURED_LATENCY
from optcli.gates import VALIDATION_METRICS, Threshold
from optcli.strict import StrictModel

_RULE = re.compile(r"^\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%?)\s*$")

# Rules when neither the recipe's `regression:` section nor --regression flags give any.
DEFAULT_RULES = {"p50_ms": "<= +5%", "cosine": ">= -0.0005", "accuracy": ">= -0.002"}

# Metrics measured per engine and batch size (benchmark) and per engine (validation).
LATENCY_METRICS = tuple(MEASURED_LATENCY)
REGRESSION_METRICS = {**MEASURED_LATENCY, **VALIDATION_METRICS}


@dataclass(frozen=True)
class Rule(Threshold):
    """A Threshold on the change from base to new: `value` is the allowed change (a fraction of
    |base| when `relative`), so a gate record's threshold reads {op: '<=', value: 0.05}."""

    relative: bool = False

    @classmethod
    def parse(cls, text: str) -> Rule:
        match = _RULE.match(str(text))
        if not match:
            raise ValueError(
                f"regression rule '{text}' is not '<op> <signed change>[%]' (op one of >=, <=, >, <), "
                "e.g. '<= +5%' or '>= -0.0005'"
            )
        op, number, percent = match.groups()
        amount = float(number) / 100.0 if percent else float(number)
        return cls(op, amount, bool(percent))

    def __str__(self) -> str:
        if self.relative:
            return f"{self.op} {self.value * 100:+.6g}%"
        return f"{self.op} {self.value:+.6g}"

    def change(self, base: float, new: float) -> float:
        """new vs base in this rule's unit (a fraction of |base| when relative)."""
        if not self.relative:
            return new - base
        if base == 0:
            return 0.0 if new == 0 else math.copysign(math.inf, new)
        return (new - base) / abs(base)

    def judge(
        self, base: float, new: float, base_ci: list[float] | None, new_ci: list[float] | None
    ) -> tuple[str, float, list[float] | None]:
        """('ok' | 'regression' | 'within_noise', point change, change interval or None).

        With both intervals, only a change interval wholly on the wrong side is a regression."""
        point = self.change(base, new)
        if base_ci is None or new_ci is None:
            return ("ok" if self.holds(point) else "regression"), point, None
        low = self.change(base_ci[1], new_ci[0])  # new as low, base as high as the intervals allow
        high = self.change(base_ci[0], new_ci[1])
        interval = [min(low, high), max(low, high)]
        # The bound most favourable to the rule decides: below for <=/<, above for >=/>.
        favourable = interval[0] if self.op in ("<=", "<") else interval[1]
        if not self.holds(favourable):
            return "regression", point, interval
        return ("ok" if self.holds(point) else "within_noise"), point, interval

    def format_change(self, change: float | None) -> str:
        if change is None:
            return "-"
        if self.relative:
            return f"{change * 100:+.2f}%" if math.isfinite(change) else f"{change:+}"
        return f"{change:+.4g}"


def parse_rules(rules: dict[str, str], *, source: str) -> dict[str, Rule]:
    """Metric -> Rule; `source` names where they came from (a flag, a recipe field) for errors."""
    parsed = {}
    for metric, text in rules.items():
        if metric not in REGRESSION_METRICS:
            raise ValueError(f"{source}: unknown metric '{metric}'; known: {', '.join(REGRESSION_METRICS)}")
        try:
            parsed[metric] = Rule.parse(text)
        except ValueError as exc:
            raise ValueError(f"{source}: {metric}: {exc}") from None
    return parsed


class _RegressionRules(StrictModel):
    """Rules for `optcli run --against BASE.json` and `optcli compare`: how far each metric may move
    from the base report, e.g. {p50_ms: '<= +5%', cosine: '>= -0.0005'}. '%' means relative to the
    base value, otherwise absolute. Speed metrics with a 95% interval in both reports count as a
    regression only beyond the noise of both runs. When this section is omitted: p50_ms '<= +5%',
    cosine '>= -0.0005', accuracy '>= -0.002'."""

    @field_validator("*")
    @classmethod
    def _is_rule(cls, value: str | None) -> str | None:
        if value is not None:
            Rule.parse(value)
        return value

    def rules(self) -> dict[str, str]:
        return {metric: text for metric, text in self.model_dump().items() if text is not None}


# One optional field per gate metric, so a metric added to the gates can have a rule at once.
RegressionSection = create_model(
    "RegressionSection",
    __base__=_RegressionRules,
    __doc__=_RegressionRules.__doc__,
    **{
        metric: (str | None, Field(None, description=f"Allowed change vs the base report: {meaning}."))
        for metric, meaning in REGRESSION_METRICS.items()
    },
)


def parse_flags(flags: list[str]) -> dict[str, str]:
    """--regression 'p50_ms=<= +5%' (repeatable) -> {metric: rule text}."""
    rules = {}
    for flag in flags:
        metric, sep, text = flag.partition("=")
        if not sep or not metric.strip():
            raise ValueError(f"--regression '{flag}': expected METRIC=RULE, e.g. 'p50_ms=<= +5%'")
        rules[metric.strip()] = text.strip()
    return rules
