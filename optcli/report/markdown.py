"""report.md: a compact summary for a pull-request comment."""

from __future__ import annotations

from typing import Any

from optcli.report.tables import (
    BENCHMARK_HEADER,
    GATES_HEADER,
    SELECTION_HEADER,
    VALIDATION_HEADER,
    benchmark_rows,
    gate_rows,
    selection_rows,
    validation_rows,
)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report: dict[str, Any]) -> str:
    recipe = report["recipe"]
    env = report.get("environment") or {}
    verdict = report["verdict"]
    icon = {"pass": "PASS", "fail": "FAIL"}.get(verdict, "ERROR")
    parts = [
        f"## optcli: `{recipe['name']}` - {icon}",
        "",
        f"Machine: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} CPUs)"
        + (f", GPU {env['gpu']['name']}" if env.get("gpu") else "")
        + f"; recipe sha256 `{recipe.get('sha256')}`",
    ]
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
    return "\n".join(parts) + "\n"
