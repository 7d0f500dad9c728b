"""Rich tables in the terminal, drawn from the same data as report.json."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from optcli.report.tables import (
    BENCHMARK_HEADER,
    ERROR_HEADER,
    GATES_HEADER,
    SELECTION_HEADER,
    VALIDATION_HEADER,
    benchmark_rows,
    error_rows,
    fmt,
    gate_rows,
    outcome,
    selection_rows,
    validation_rows,
)


def _table(title: str, header: list[str], rows: list[list[str]], left_columns: int = 1) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < left_columns else "right")
    for row in rows:
        style = "red" if row and row[-1] == "FAIL" else None
        table.add_row(*row, style=style)
    return table


def render_terminal(report: dict[str, Any], console: Console) -> None:
    headline, error = outcome(report)
    if error is not None:  # a run that did not finish: say so before anything that looks like results
        code = error.get("exit_code")
        console.print(f"[bold red]{headline}[/]" + (f" (exit {code})" if code is not None else ""))
        if error.get("kind"):
            rows = [[escape(cell) for cell in row] for row in error_rows(report, error)]
            console.print(_table("The run did not finish", ERROR_HEADER, rows, 4))
        console.print(escape(str(error.get("message", ""))))
        if error.get("hint"):
            console.print(f"hint: {escape(str(error['hint']))}")
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


def render_diagnosis(layers: list[dict[str, Any]], top: int, console: Console) -> None:
    rows = [
        [
            layer["node"],
            layer["op_type"],
            layer["module"] or "-",
            fmt(layer.get("model_sqnr_db"), 3),
            f"{layer['sqnr_db']:.1f}",
            f"{layer['added_noise']:.2e}",
            fmt(layer["weight_sqnr_db"], 3),
        ]
        for layer in layers[:top]
    ]
    header = [
        "node",
        "op",
        "module",
        "model SQNR dB (alone)",
        "output SQNR dB",
        "added noise",
        "weight SQNR dB",
    ]
    console.print(
        _table(
            f"Worst layers (of {len(layers)}), by the damage each does to the model's outputs "
            "when quantized alone",
            header,
            [[escape(cell) for cell in row] for row in rows],
        )
    )


def render_doctor(checks: list[Any], console: Console) -> None:
    rows = [
        [check.name, "ok" if check.usable else "missing", escape(check.detail), escape(check.fix or "")]
        for check in checks
    ]
    console.print(_table("optcli doctor", ["component", "status", "detail", "fix"], rows, left_columns=4))
