"""Validation fastest first, for a target run.

A target run deploys the fastest candidate that passes the validate gates. So once one candidate
has passed, a candidate whose latency probe is `ratio` or more times that one's can never be chosen:
validating and benchmarking it would only cost time. The candidates are validated in tiers, fastest
first. Each tier holds the fastest candidate left and everything within `ratio` of it. After each
tier, the candidates at `ratio` or more times the fastest one that passed so far are pruned.

The probe is noisy, so the ratio has to be wide (1.5 by default). Two candidates within it are both
validated and benchmarked, and the benchmark's interleaved rounds decide between them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Pruned:
    """A candidate left unvalidated: its probe was `ratio` times that of `by`, which passed."""

    by: str
    ratio: float
    probe_ms: float
    by_probe_ms: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def reason(self) -> str:
        return (
            f"not validated: its latency probe ({self.probe_ms:.3g} ms) was {self.ratio:.2f}x that of "
            f"{self.by} ({self.by_probe_ms:.3g} ms), which passed"
        )


def validate_fastest_first(
    probe_ms: dict[str, float],
    ratio: float,
    validate: Callable[[list[str]], set[str]],
    *,
    tiers_are_cheap: Callable[[], bool] = lambda: True,
) -> dict[str, Pruned]:
    """Call `validate(labels)` on tiers of candidates, fastest first; it returns the labels that
    passed. Returns the candidates pruned, by label. When `tiers_are_cheap()` turns false (the
    baseline's outputs could not be kept for another pass), the next tier is everything left."""
    remaining = sorted(probe_ms, key=lambda label: probe_ms[label])
    best: str | None = None
    pruned: dict[str, Pruned] = {}
    while remaining:
        if best is not None:
            limit = ratio * probe_ms[best]
            for label in remaining:
                if probe_ms[label] >= limit:
                    share = probe_ms[label] / probe_ms[best]
                    pruned[label] = Pruned(best, round(share, 3), probe_ms[label], probe_ms[best])
            remaining = [label for label in remaining if label not in pruned]
            if not remaining:
                break
        fastest = probe_ms[remaining[0]]
        cheap = tiers_are_cheap()
        tier = [label for label in remaining if not cheap or probe_ms[label] < ratio * fastest]
        passed = validate(tier)
        remaining = [label for label in remaining if label not in tier]
        for label in tier:
            if label in passed and (best is None or probe_ms[label] < probe_ms[best]):
                best = label
    return pruned
