"""`optcli compare BASE NEW`: the table of what moved, and the exit code of the regression rules."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from optcli.compare import check_same_recipe, compare, load_report, read_side, resolve_rules
from optcli.console import console
from optcli.errors import UserInputError
from optcli.regression import parse_flags

_RESULT = {
    "pass": "ok",
    "fail": "[red]REGRESSION[/]",
    "within_noise": "[yellow]within noise[/]",
    "added": "added",
    "removed": "removed",
    "info": "-",
}


def compare_command(
    base_path: Path, new_path: Path, flags: list[str], as_json: bool, allow_different: bool, console: Console
) -> int:
    """0: no regression, 1: a regression beyond the rules; bad files or flags raise (exit 2)."""
    base = load_report(base_path, role="base")
    new = load_report(new_path, role="new")
    check_same_recipe(base, new, str(base_path), str(new_path), allow_different)
    try:
        rules, source = resolve_rules(new, parse_flags(flags))
    except ValueError as exc:
        raise UserInputError(str(exc)) from None
    table, gates = compare(read_side(base, str(base_path)), read_side(new, str(new_path)), rules)
    table["rules_from"] = source
    render_regression(table, console)
    failed = [g for g in gates if not g.passed]
    if as_json:
        from optcli.workspace import strict_json

        summary = {**table, "gates": [g.to_dict() for g in gates]}
        print(json.dumps(strict_json(summary), indent=2, default=str, allow_nan=False))
    if failed:
        names = ", ".join(f"{g.name} ({g.engine})" for g in failed)
        console.print(f"[red]FAIL[/] {len(failed)} regression(s): {escape(names)}")
        return 1
    console.print("[green]PASS[/] no regression beyond the rules")
    return 0


def _value(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "-"
    text = f"{value:.4g}" if math.isfinite(value) else str(value)
    return text + (f" [{interval[0]:.4g}, {interval[1]:.4g}]" if interval else "")


def _shown(row: dict[str, Any]) -> bool:
    """What moved: rows with a rule or a change, and added/removed ones; unchanged info rows are not."""
    return row["status"] != "info" or bool(row["change"])


def render_regression(table: dict[str, Any], console: Console) -> None:
    rules = ", ".join(f"{m} {r}" for m, r in table["rules"].items())
    title = f"Regressions vs {table['base']['path']} (rules from {table.get('rules_from', '-')}: {rules})"
    out = Table(title=escape(title), title_justify="left", header_style="bold")
    header = ["engine", "batch", "metric", "base", "new", "change", "rule", "result", "note"]
    for i, name in enumerate(header):
        out.add_column(name, justify="left" if i in (0, 2, 6, 7, 8) else "right")
    rows = [row for row in table["rows"] if _shown(row)]
    for row in rows:
        out.add_row(
            escape(row["engine"]),
            "-" if row["batch_size"] is None else str(row["batch_size"]),
            row["metric"],
            _value(row["base"], row["base_interval"]),
            _value(row["new"], row["new_interval"]),
            row["change_text"],
            escape(row["rule"] or "-"),
            _RESULT.get(row["status"], row["status"]),
            escape(row["note"]),
        )
    for engine in table["missing_engines"]:
        out.add_row(escape(engine), "-", "engine", "present", "missing", "-", "-", _RESULT["fail"], "")
    console.print(out)
    hidden = len(table["rows"]) - len(rows)
    if hidden:
        console.print(f"[dim]{hidden} unchanged metric(s) without a rule not shown[/]")
    for engine in table["added_engines"]:
        console.print(f"[dim]added engine: {escape(engine)} (not in the base report)[/]")


def compare_reports(
    base: Annotated[Path, typer.Argument(help="The stored report.json to compare with.", show_default=False)],
    new: Annotated[Path, typer.Argument(help="The new report.json.", show_default=False)],
    regression: Annotated[
        list[str] | None,
        typer.Option(
            "--regression",
            "-r",
            metavar="<metric=rule>",
            help="METRIC=RULE, repeatable, over the new report's recipe `regression` rules, e.g. "
            "'p50_ms=<= +5%' (relative) or 'cosine=>= -0.0005' (absolute).",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Also print the table and gates as JSON on stdout.")
    ] = False,
    allow_different: Annotated[
        bool, typer.Option("--allow-different", help="Compare reports of different recipes.")
    ] = False,
) -> None:
    """Show what moved between two report.json files; exit 1 on a regression beyond the rules.

    A speed change counts only beyond the 95% intervals of both runs. Exit 2: a bad or unfinished report.

    Default rules: p50_ms '<= +5%', cosine '>= -0.0005', accuracy '>= -0.002'.
    """
    raise typer.Exit(compare_command(base, new, regression or [], as_json, allow_different, console))
