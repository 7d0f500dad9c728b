"""Accuracy recovery: return the most damaging layers to floating point until the gate passes.

Greedy and bounded: candidates come ranked from the per-layer diagnosis; each trial re-quantizes
with one more layer excluded (cheap: calibration statistics are cached) and re-validates. A
candidate is kept only if it improves the metric (the diagnosis is a guess, the trial confirms
it), and the loop stops at the first passing set, after `max_trials`, or at `time_budget_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field


@dataclass
class Trial:
    excluded: list[str]
    value: float
    passed: bool
    kept: bool
    seconds: float


@dataclass
class RecoveryResult:
    passed: bool
    excluded: list[str]
    value: float
    target: float
    initial_value: float
    trials: list[Trial] = field(default_factory=list)
    stopped_by: str = ""

    def to_dict(self) -> dict:
        return {**asdict(self), "trials": [asdict(t) for t in self.trials]}


def recover(
    candidates: list[str],
    evaluate: Callable[[list[str]], float],
    *,
    initial_value: float,
    target: float,
    higher_is_better: bool = True,
    max_trials: int,
    time_budget_s: float,
    clock: Callable[[], float] = time.perf_counter,
) -> RecoveryResult:
    """`evaluate(excluded_nodes)` quantizes with those nodes kept in float and returns the metric.

    Each candidate is a group of nodes tried together: a layer and the consumers of its output,
    since a tensor stays in floating point only when none of the nodes around it quantizes it.
    """

    def passes(value: float) -> bool:
        return value >= target if higher_is_better else value <= target

    def better(a: float, b: float) -> bool:
        return a > b if higher_is_better else a < b

    result = RecoveryResult(passes(initial_value), [], initial_value, target, initial_value)
    if result.passed:
        result.stopped_by = "already passing"
        return result
    deadline = clock() + time_budget_s
    for group in candidates:
        if all(node in result.excluded for node in group):
            continue
        if len(result.trials) >= max_trials:
            result.stopped_by = f"max_trials ({max_trials})"
            break
        if clock() >= deadline:
            result.stopped_by = f"time_budget_s ({time_budget_s:g})"
            break
        trial_set = [*result.excluded, *(node for node in group if node not in result.excluded)]
        start = clock()
        value = evaluate(trial_set)
        keep = better(value, result.value)
        result.trials.append(Trial(trial_set, value, passes(value), keep, round(clock() - start, 3)))
        if keep:
            result.excluded, result.value = trial_set, value
        if passes(value):
            result.passed = True
            result.stopped_by = "gate passed"
            break
    else:
        result.stopped_by = result.stopped_by or "candidates exhausted"
    return result
