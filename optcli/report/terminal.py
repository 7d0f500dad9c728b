"""Rich tables in the terminal, drawn from the same data as report.json."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

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


def _table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in rows:
        style = "red" if row and row[-1] == "FAIL" else None
        table.add_row(*row, style=style)
    return table


def render_terminal(report: dict[str, Any], console: Console) -> None:
    if report.get("validation"):
        v = report["validation"]
        kind = "synthetic" if v.get("synthetic") else v["data"].get("type")
        console.print(
            _table(
                f"Accuracy vs baseline ({v['samples']} held-out samples, {kind} data)",
                VALIDATION_HEADER,
                validation_rows(report),
            )
        )
    if report.get("benchmark"):
        console.print(_table("Latency", BENCHMARK_HEADER, benchmark_rows(report)))
    if report.get("gates"):
        console.print(_table("Gates", GATES_HEADER, gate_rows(report)))
    if (report.get("selection") or {}).get("ranking"):
        selection = report["selection"]
        title = f"Target {selection['target']}: candidates at batch {selection['batch_size']}"
        console.print(_table(title, SELECTION_HEADER, selection_rows(report)))
    for skipped in report.get("skipped_engines", []):
        console.print(
            f"[yellow]skipped:[/] {escape(skipped['engine'])}: {escape(skipped['reason'])} "
            f"(fix: {escape(skipped['fix'])})"
        )
    for warning in report.get("warnings", []):
        console.print(f"[yellow]warning:[/] {escape(warning)}")
