"""Rich tables in the terminal, drawn from the same data as report.json."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from optcli.report.tables import (
    ERROR_HEADER,
    GATES_HEADER,
    SELECTION_HEADER,
    SLO_HEADER,
    VALIDATION_HEADER,
    error_rows,
    fmt,
    gate_rows,
    outcome,
    selection_rows,
    slo_rows,
    slo_title,
    validation_rows,
)

_ROW_STYLES = {"FAIL": "red", "INCONCLUSIVE": "yellow", "noisy": "yellow"}


def _table(title: str, header: list[str], rows: list[list[str]], left_columns: int = 1) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i < left_columns else "right")
    for row in rows:
        table.add_row(*row, style=_ROW_STYLES.get(row[-1]) if row else None)
    return table


LATENCY_HEADER = ["engine", "batch", "rounds", "p50 ms [95%]", "p90 ms", "p99 ms", "throughput/s"]
LATENCY_HEADER += ["speedup [95%]", "CV", "spread"]


def _interval(values: Any, digits: int = 3) -> str:
    return f" [{fmt(values[0], digits)}, {fmt(values[1], digits)}]" if values else ""


def latency_rows(report: dict[str, Any]) -> list[list[str]]:
    """The benchmark per engine and batch size, with the 95% intervals the speed gates use and the
    spread (CV; noisy above benchmark.max_cv)."""
    rows = []
    for r in (report.get("benchmark") or {}).get("results", []):
        lat, spread = r["latency_ms"], r.get("spread") or {}
        speedup = "-" if r.get("speedup") is None else f"{fmt(r['speedup'], 3)}x"
        rows.append(
            [
                escape(r["engine"]),
                str(r["batch_size"]),
                str(r.get("rounds", 1)),
                fmt(lat["p50"]) + _interval(lat.get("p50_ci")),
                fmt(lat["p90"]),
                fmt(lat["p99"]),
                fmt(r["throughput"]),
                speedup + _interval(r.get("speedup_ci")),
                fmt(spread.get("cv"), 2),
                "noisy" if r.get("noisy") else "ok",
            ]
        )
    return rows


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
    if (report.get("benchmark") or {}).get("slo"):
        console.print(
            _table(slo_title(report), SLO_HEADER, [[escape(c) for c in r] for r in slo_rows(report)])
        )
    elif report.get("benchmark"):
        bench = report["benchmark"]
        again = f", re-measured {bench['remeasured']}x" if bench.get("remeasured") else ""
        how = f" ({bench['method']}, {bench['rounds']} rounds{again})" if bench.get("method") else ""
        console.print(_table(f"Latency{how}", LATENCY_HEADER, latency_rows(report)))
    from optcli.llm.tables import terminal_tables  # pipeline: llm reports (optcli/llm)

    for table in terminal_tables(report, _table):
        console.print(table)
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


def verdict_line(report: dict[str, Any]) -> str:
    """The run's last line before the report path: PASS, FAIL or INCONCLUSIVE with the gate counts."""
    counted = [g for g in report.get("gates", []) if g.get("counts", True)]
    failed = [g for g in counted if g.get("status", "pass" if g.get("passed") else "fail") == "fail"]
    undecided = [g for g in counted if g.get("status") == "inconclusive"]
    if failed:
        also = f", {len(undecided)} inconclusive" if undecided else ""
        return f"[red]FAIL[/] ({len(failed)} gate(s) failed{also})"
    if any(not g.get("passed") for g in undecided):
        return f"[yellow]INCONCLUSIVE[/] ({len(undecided)} gate(s) could not be decided, counted as failed)"
    if undecided:
        return f"[green]PASS[/] [yellow]({len(undecided)} gate(s) inconclusive, allowed by the recipe)[/]"
    return "[green]PASS[/]"
