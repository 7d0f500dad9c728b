"""`target: cpu`: the plan builds every available candidate for the target; after validation and
benchmark, the candidates are ranked by p50 latency at the first benchmark batch size. The chosen
one's gates decide the verdict; the others' stay in the report as information with the reason each
lost. Inputs are values (gates, latency results), not the report.
"""

from __future__ import annotations

from typing import Any

from optcli.benchmarking import LatencyResult
from optcli.gates import GateResult


def select(
    candidates: list[str],
    precisions: dict[str, str],
    gates: list[GateResult],
    latency: list[LatencyResult],
    batch: int,
    *,
    extra: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Rank the candidates, choose the fastest passing one, and make the others' gates informational.
    `extra`: fields added to a candidate's row (the mixed candidate's layers kept in float)."""
    by_engine = {r.engine: r for r in latency if r.batch_size == batch}
    rows = []
    for label in candidates:
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
    rows.sort(key=lambda r: (not r["passed"], r["p50_ms"] if r["p50_ms"] is not None else float("inf")))
    chosen = next((r for r in rows if r["passed"] and r["p50_ms"] is not None), None)
    for row in rows:
        row["reason"] = _reason(row, chosen)
    if chosen is not None:  # with no passing candidate every gate counts, and the run fails
        for gate in gates:
            if gate.engine in candidates and gate.engine != chosen["engine"]:
                gate.counts = False
    return {"batch_size": batch, "ranking": rows, "chosen": chosen["engine"] if chosen else None}


def to_benchmark(engines: list[Any], gates: list[GateResult]) -> list[Any]:
    """The baseline (first) and every engine whose validate gates all passed: a candidate that
    failed one cannot be chosen, so timing it would only cost time."""
    failed = {g.engine for g in gates if g.name.startswith("validate.") and not g.passed}
    return [engines[0], *(e for e in engines[1:] if e.label not in failed)]


def _reason(row: dict[str, Any], chosen: dict[str, Any] | None) -> str:
    if chosen is not None and row["engine"] == chosen["engine"]:
        return "chosen: fastest that passes the validate gates"
    if not row["passed"]:
        return "failed " + "; ".join(row["failed_gates"]) + " (not benchmarked)" * (row["p50_ms"] is None)
    if chosen is not None and row["p50_ms"] is not None:
        return f"slower: {row['p50_ms'] / chosen['p50_ms']:.2f}x the chosen engine's p50"
    return "no latency measured"
