"""`target: cpu`: the plan builds every available candidate for the target; after validation and
benchmark, the candidates are ranked by p50 latency at the first benchmark batch size. The chosen
one's gates decide the verdict; the others' stay in the report as information with the reason each
lost. Inputs are values (gates, latency results), not the report.
"""

from __future__ import annotations

from typing import Any

from optcli.benchmarking import LatencyResult
from optcli.benchmarking.probe import probe_latency
from optcli.calibration.synthetic import random_batch
from optcli.fastest_first import Pruned
from optcli.gates import GateResult
from optcli.specs import ShapeResolver

_ORDER = {True: 0, False: 1, None: 2}  # passed, failed, pruned (never validated)


def select(
    candidates: list[str],
    precisions: dict[str, str],
    gates: list[GateResult],
    latency: list[LatencyResult],
    batch: int,
    *,
    extra: dict[str, dict[str, Any]] | None = None,
    pruned: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Rank the candidates, choose the fastest passing one, and make the others' gates informational.
    `extra`: fields added to a candidate's row (the mixed candidate's layers kept in float).
    `pruned`: candidates validation left out as too slow to be chosen (optcli.fastest_first)."""
    by_engine = {r.engine: r for r in latency if r.batch_size == batch}
    pruned = pruned or {}
    rows = []
    for label in candidates:
        if label in pruned:
            why = Pruned(**pruned[label])
            rows.append(
                {"engine": label, "precision": precisions.get(label), "p50_ms": None, "speedup": None}
                | {"passed": None, "failed_gates": [], "pruned": why.to_dict(), "reason": why.reason()}
            )
            continue
        failed = [g for g in gates if g.engine == label and g.name.startswith("validate.") and not g.passed]
        result = by_engine.get(label)
        rows.append(
            {
                "engine": label,
                "precision": precisions.get(label),
                "p50_ms": result.p50_ms if result else None,
                "speedup": result.speedup if result else None,
                "passed": not failed,
                "failed_gates": [
                    f"{g.name} {g.value:.4g} (needs {g.threshold})" if g.value is not None else g.name
                    for g in failed
                ],
                **(extra or {}).get(label, {}),
            }
        )
    # Passed first, then failed, then pruned; by p50 within each.
    rows.sort(key=lambda r: (_ORDER[r["passed"]], r["p50_ms"] if r["p50_ms"] is not None else float("inf")))
    chosen = next((r for r in rows if r["passed"] and r["p50_ms"] is not None), None)
    for row in rows:
        if row["passed"] is not None:
            row["reason"] = _reason(row, chosen)
    if chosen is not None:  # with no passing candidate every gate counts, and the run fails
        for gate in gates:
            if gate.engine in candidates and gate.engine != chosen["engine"]:
                gate.counts = False
    return {"batch_size": batch, "ranking": rows, "chosen": chosen["engine"] if chosen else None}


def latency_probe(settings, target: str | None, resolver: ShapeResolver):
    """A target run's latency probe at the benchmark's first batch size (the one the choice is made
    at), for validating fastest first; None when no latency benchmark will rank the candidates."""
    if target is None or not settings.enabled or settings.mode != "latency":
        return None
    batch = settings.batch_sizes[0]
    feeds = random_batch(resolver, resolver.sizes(batch_size=batch), seed=7)  # the benchmark's feeds
    return lambda engines: probe_latency(engines, feeds, batch)


def to_benchmark(engines: list[Any], gates: list[GateResult], pruned: dict[str, Any] | None = None):
    """The baseline (first) and every engine whose validate gates all passed: a candidate that
    failed one, or that validation left out (`pruned`), cannot be chosen, so timing it would only
    cost time."""
    failed = {g.engine for g in gates if g.name.startswith("validate.") and not g.passed} | set(pruned or ())
    return [engines[0], *(e for e in engines[1:] if e.label not in failed)]


def _reason(row: dict[str, Any], chosen: dict[str, Any] | None) -> str:
    if chosen is not None and row["engine"] == chosen["engine"]:
        return "chosen: fastest that passes the validate gates"
    if not row["passed"]:
        return "failed " + "; ".join(row["failed_gates"]) + " (not benchmarked)" * (row["p50_ms"] is None)
    if chosen is not None and row["p50_ms"] is not None:
        return f"slower: {row['p50_ms'] / chosen['p50_ms']:.2f}x the chosen engine's p50"
    return "no latency measured"
