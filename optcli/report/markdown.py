"""report.md: a compact summary for a pull-request comment."""

from __future__ import annotations

from typing import Any

from optcli.report.tables import (
    BENCHMARK_HEADER,
    ERROR_HEADER,
    GATES_HEADER,
    SELECTION_HEADER,
    VALIDATION_HEADER,
    benchmark_rows,
    error_rows,
    gate_rows,
    outcome,
    selection_rows,
    validation_rows,
)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _quote(text: str) -> list[str]:
    """A block quote: the message stays one block whatever characters it holds."""
    return ["> " + line if line else ">" for line in str(text).splitlines() or [""]]


def render_markdown(report: dict[str, Any]) -> str:
    recipe = report["recipe"]
    env = report.get("environment") or {}
    headline, error = outcome(report)
    code = (error or {}).get("exit_code")
    parts = [
        f"## optcli: `{recipe['name']}` - {headline}" + (f" (exit {code})" if code is not None else ""),
        "",
        f"Status: `{report.get('status', 'finished')}`"
        + (f", verdict `{report['verdict']}`" if error is None else ""),
        "",
        f"Machine: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} CPUs)"
        + (f", GPU {env['gpu']['name']}" if env.get("gpu") else "")
        + f"; recipe sha256 `{recipe.get('sha256')}`",
    ]
    if error is not None:
        parts += ["", "### The run did not finish", ""]
        if error.get("kind"):
            parts += [_table(ERROR_HEADER, error_rows(report, error)), ""]
        parts += _quote(error.get("message", ""))
        if error.get("hint"):
            parts += ["", f"Hint: {error['hint']}"]
    note = len(parts)  # where "not a verdict" goes, if any results follow
    if report.get("validation"):
        v = report["validation"]
        data = "synthetic" if v.get("synthetic") else v["data"].get("type")
        tuning = (v.get("tuning_samples") or {}).get("count")
        after = f" after the {tuning} accuracy recovery tuned on" if tuning else ""
        parts += [
            "",
            f"### Accuracy ({v['samples']} held-out samples{after}, {data} data)",
            "",
            _table(VALIDATION_HEADER, validation_rows(report)),
        ]
    if report.get("benchmark"):
        parts += ["", "### Latency", "", _table(BENCHMARK_HEADER, benchmark_rows(report))]
    if report.get("gates"):
        parts += ["", "### Gates", "", _table(GATES_HEADER, gate_rows(report))]
    if (report.get("selection") or {}).get("ranking"):
        chosen = report["selection"]["chosen"]
        parts += [
            "",
            f"### Target {report['selection']['target']}: chosen `{chosen}`",
            "",
            _table(SELECTION_HEADER, selection_rows(report)),
        ]
    if report.get("skipped_engines"):
        parts += ["", "### Skipped engines (not run, not passed)", ""]
        parts += [f"- `{s['engine']}`: {s['reason']} (fix: {s['fix']})" for s in report["skipped_engines"]]
    if report.get("warnings"):
        parts += ["", "### Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    if error is not None and len(parts) > note:
        parts[note:note] = [
            "",
            "Below is what the run had measured when this report was written: not a verdict.",
        ]
    return "\n".join(parts) + "\n"
