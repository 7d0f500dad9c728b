"""report.md: a compact summary for a pull-request comment."""

from __future__ import annotations

from typing import Any

from optcli.report.headline import headline as summary_line
from optcli.report.headline import noisy_text, versions_text
from optcli.report.tables import (
    BENCHMARK_HEADER,
    ERROR_HEADER,
    GATES_HEADER,
    SELECTION_HEADER,
    SLO_HEADER,
    VALIDATION_HEADER,
    benchmark_rows,
    error_rows,
    gate_failed,
    gate_rows,
    outcome,
    selection_rows,
    slo_rows,
    slo_title,
    validation_rows,
)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _quote(text: str) -> list[str]:
    """A block quote: the message stays one block whatever characters it holds."""
    return ["> " + line if line else ">" for line in str(text).splitlines() or [""]]


MARKER = "<!-- optcli-report:{name} -->"


def marker(report: dict[str, Any]) -> str:
    """A hidden line a bot searches for to update its one comment per recipe instead of adding more."""
    return MARKER.format(name=str(report["recipe"]["name"]).replace("--", "- -"))


def _gates(report: dict[str, Any]) -> list[str]:
    """Failures first, in the open; passing and informational gates folded away."""
    gates = report.get("gates") or []
    failed = [g for g in gates if gate_failed(g)]
    others = [g for g in gates if not gate_failed(g)]
    parts: list[str] = []
    if failed:
        parts += [
            "",
            f"### Failed gates ({len(failed)})",
            "",
            _table(GATES_HEADER, gate_rows(report, failed)),
        ]
    if others:
        parts += [
            "",
            "<details>",
            f"<summary>Passing gates ({len(others)})</summary>",
            "",
            _table(GATES_HEADER, gate_rows(report, others)),
            "",
            "</details>",
        ]
    return parts


def _llm_sections(report: dict[str, Any]) -> list[str]:
    from optcli.llm.tables import markdown_sections  # pipeline: llm reports (optcli/llm)

    return markdown_sections(report, _table)


def render_markdown(report: dict[str, Any]) -> str:
    recipe = report["recipe"]
    env = report.get("environment") or {}
    headline, error = outcome(report)
    code = (error or {}).get("exit_code")
    first = f"## optcli: `{recipe['name']}` - {headline}"
    if error is None:  # a verdict: what to deploy and what it buys
        first += f": {summary_line(report)}"
    elif code is not None:
        first += f" (exit {code})"
    parts = [
        first,
        "",
        f"Status: `{report.get('status', 'finished')}`"
        + (f", verdict `{report['verdict']}`" if error is None else ""),
        "",
        f"Machine: {env.get('cpu', '?')} ({env.get('cpu_count', '?')} CPUs)"
        + (f", GPU {env['gpu']['name']}" if env.get("gpu") else "")
        + f"; recipe sha256 `{recipe.get('sha256')}`",
        "",
        f"Versions: {versions_text(report)}",
    ]
    if report.get("started_at"):
        parts[-1] += f"; started {report['started_at']}" + (
            f", ended {report['ended_at']}" if report.get("ended_at") else ""
        )
    if error is not None:
        parts += ["", "### The run did not finish", ""]
        if error.get("kind"):
            parts += [_table(ERROR_HEADER, error_rows(report, error)), ""]
        parts += _quote(error.get("message", ""))
        if error.get("hint"):
            parts += ["", f"Hint: {error['hint']}"]
    note = len(parts)  # where "not a verdict" goes, if any results follow
    parts += _gates(report)
    parts += _llm_sections(report)
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
    if (report.get("benchmark") or {}).get("slo"):
        parts += ["", f"### {slo_title(report)}", "", _table(SLO_HEADER, slo_rows(report))]
    elif report.get("benchmark"):
        parts += ["", "### Latency", "", _table(BENCHMARK_HEADER, benchmark_rows(report))]
        if noisy_text(report):
            parts += ["", f"**Warning, {noisy_text(report)}**"]
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
    return "\n".join([*parts, "", marker(report)]) + "\n"
