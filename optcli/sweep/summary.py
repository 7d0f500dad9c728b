"""What the matrix shows of one cell, read from its report.json: verdict, the chosen engine, its
speedup and its accuracy change vs the PyTorch baseline."""

from __future__ import annotations

from typing import Any


def summarize(report: dict[str, Any] | None) -> dict[str, Any]:
    if not report:
        return {}
    chosen = _chosen(report)
    metrics = next(
        (
            e.get("metrics", {})
            for e in report.get("validation", {}).get("engines", [])
            if e["engine"] == chosen
        ),
        {},
    )
    accuracy = metrics.get("accuracy_drop")
    return {
        "verdict": report.get("verdict"),
        "chosen": chosen,
        "speedup": _speedup(report, chosen),
        # Task accuracy when the data has labels, else the output cosine vs the baseline.
        "accuracy_change": -accuracy if isinstance(accuracy, (int, float)) else None,
        "cosine": metrics.get("cosine"),
        "failed_gates": [
            f"{g['name']} ({g.get('engine')})"
            for g in report.get("gates", [])
            if g.get("counts", True) and not g.get("passed")
        ],
        "error": (report.get("error") or {}).get("message"),
    }


def _first_batch_results(report: dict[str, Any]) -> list[dict[str, Any]]:
    results = report.get("benchmark", {}).get("results", [])
    if not results:
        return []
    batch = results[0]["batch_size"]
    return [r for r in results if r["batch_size"] == batch]


def _chosen(report: dict[str, Any]) -> str | None:
    """`--target`'s choice; else the fastest engine beside the baseline; else the last one built."""
    selected = (report.get("selection") or {}).get("chosen")
    if selected:
        return selected
    baseline = report.get("benchmark", {}).get("baseline")
    rows = [r for r in _first_batch_results(report) if r["engine"] != baseline and r.get("speedup")]
    if rows:
        return max(rows, key=lambda r: r["speedup"])["engine"]
    engines = [e["label"] for e in report.get("engines", []) if not e.get("baseline")]
    return engines[-1] if engines else None


def _speedup(report: dict[str, Any], engine: str | None) -> float | None:
    row = next((r for r in _first_batch_results(report) if r["engine"] == engine), None)
    value = row.get("speedup") if row else None
    return value if isinstance(value, (int, float)) else None


def cell_text(summary: dict[str, Any], status: str, exit_code: int | None) -> str:
    """One matrix cell: 'PASS ort-int8 3.1x -0.2pt', 'FAIL validate.cosine', 'ERROR (exit 2)'."""
    if status == "resumed":
        return "PASS (resumed) " + _details(summary)
    if status in ("pending", "not run"):
        return "-"
    if status == "running":
        return "running"
    if status == "interrupted":
        return "INTERRUPTED"
    if status == "error":
        return "ERROR (worker lost)"
    if exit_code == 0:
        return ("PASS " + _details(summary)).strip()
    if exit_code == 1:
        failed = summary.get("failed_gates") or []
        first = failed[0].split(" ")[0] if failed else "gate"
        more = f" +{len(failed) - 1}" if len(failed) > 1 else ""
        return f"FAIL {first}{more} " + _details(summary)
    return f"ERROR (exit {exit_code})"


def _details(summary: dict[str, Any]) -> str:
    parts = [summary.get("chosen") or ""]
    if summary.get("speedup") is not None:
        parts.append(f"{summary['speedup']:.2f}x")
    if summary.get("accuracy_change") is not None:
        parts.append(f"{100 * summary['accuracy_change']:+.1f}pt")
    elif isinstance(summary.get("cosine"), (int, float)):
        parts.append(f"cos {summary['cosine']:.4f}")
    return " ".join(p for p in parts if p)
