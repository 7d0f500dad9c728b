"""The matrix view of a sweep: rows models, columns variants, each cell its verdict, chosen engine,
speedup and accuracy change (terminal and sweep.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from optcli.sweep.results import CellRecord

_STYLES = {"PASS": "green", "FAIL": "red", "ERROR": "red", "INTERRUPTED": "yellow"}


def grid(records: list[CellRecord]) -> tuple[list[str], list[str], dict[tuple[str, str], CellRecord]]:
    models = list(dict.fromkeys(r.cell.model for r in records))
    variants = list(dict.fromkeys(r.cell.variant for r in records))
    return models, variants, {(r.cell.model, r.cell.variant): r for r in records}


def render(records: list[CellRecord], console: Console, title: str) -> None:
    models, variants, cells = grid(records)
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("model")
    for variant in variants:
        table.add_column(variant)
    for model in models:
        row = [escape(model)]
        for variant in variants:
            record = cells.get((model, variant))
            text = record.text if record else ""
            style = _STYLES.get(text.split(" ")[0], "")
            row.append(f"[{style}]{escape(text)}[/]" if style else escape(text))
        table.add_row(*row)
    console.print(table)
    for record in records:
        if record.status == "error" or (record.exit_code or 0) >= 2:
            console.print(f"[red]{escape(record.cell.id)}[/]: {escape(record.message)}")


def markdown(data: dict[str, Any], records: list[CellRecord]) -> str:
    models, variants, cells = grid(records)
    lines = [
        f"# Sweep {data['name']}: {data['status']}, exit {data['exit_code']}",
        "",
        f"Executor `{data['executor']}`, sweep file `{data['sweep_file']}`, started {data['started']}.",
        "",
        "| model | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for model in models:
        texts = [cells[(model, v)].text if (model, v) in cells else "" for v in variants]
        lines.append(f"| {model} | " + " | ".join(t.replace("|", "/") for t in texts) + " |")
    lines += [
        "",
        "| cell | status | exit | attempts | seconds | run folder | message |",
        "|---|---|---|---|---|---|---|",
    ]
    for record in records:
        row = record.to_dict()
        message = (record.message or "").replace("|", "/").replace("\n", " ")[:200]
        lines.append(
            f"| {row['id']} | {row['status']} | {row['exit_code']} | {len(record.attempts)} | "
            f"{row['seconds']} | `{row['run_dir']}` | {message} |"
        )
    return "\n".join(lines) + "\n"
