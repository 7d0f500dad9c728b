"""report.html: one self-contained page (inline CSS and SVG, no script, no network asset) that a CI
job uploads as an artifact: the verdict, latency distributions per engine, per-layer error, gates."""

from __future__ import annotations

from html import escape
from typing import Any

from optcli.report.headline import headline, noisy_text, versions_text
from optcli.report.svg import latency_chart, layer_chart
from optcli.report.tables import (
    BENCHMARK_HEADER,
    GATES_HEADER,
    SLO_HEADER,
    VALIDATION_HEADER,
    benchmark_rows,
    gate_failed,
    gate_rows,
    outcome,
    slo_rows,
    slo_title,
    validation_rows,
)

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1000px;color:#222}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0} th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}
th:first-child,td:first-child,td:nth-child(2),td:nth-child(3){text-align:left} th{background:#f4f4f4}
tr.fail td{background:#fde2e0} tr.inconclusive td{background:#fff3cd}
.verdict{font-weight:bold;padding:2px 8px;border-radius:4px;color:#fff}
.PASS{background:#2e7d32} .FAIL,.ERROR,.INTERRUPTED,.INCOMPLETE{background:#c62828}
.INCONCLUSIVE{background:#ef6c00} .note{color:#555} svg{display:block;margin:6px 0 14px}
"""


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _samples(timings: dict[str, Any] | None, engine: str, batch: int) -> list[float] | None:
    """Every timed iteration of one engine at one batch size, all rounds together (timings.json)."""
    rounds = ((timings or {}).get(engine) or {}).get(str(batch))
    if not rounds:
        return None
    flat = [float(ms) for item in rounds for ms in (item if isinstance(item, list) else [item])]
    return flat or None


def latency_section(report: dict[str, Any], timings: dict[str, Any] | None) -> str:
    results = (report.get("benchmark") or {}).get("results", [])
    batches = sorted({r["batch_size"] for r in results})
    charts = []
    for batch in batches:
        rows = [
            (r["engine"], _samples(timings, r["engine"], batch), r.get("latency_ms") or {})
            for r in results
            if r["batch_size"] == batch
        ]
        charts.append(latency_chart(batch, rows))
    source = "raw timings (timings.json)" if timings else "percentiles (no raw timings saved)"
    parts = [f"<h2>Latency</h2><p class='note'>Distributions from {source}.</p>", *charts]
    parts.append(_table(BENCHMARK_HEADER, benchmark_rows(report)))
    if noisy_text(report):
        parts.append(f"<p><strong>Warning, {escape(noisy_text(report))}</strong></p>")
    return "".join(parts)


def gates_section(report: dict[str, Any]) -> str:
    gates = report.get("gates") or []
    ordered = [g for g in gates if gate_failed(g)] + [g for g in gates if not gate_failed(g)]
    classes = [
        "fail" if gate_failed(g) and g.get("status") != "inconclusive" else (g.get("status") or "")
        for g in ordered
    ]
    classes = [c if c in ("fail", "inconclusive") else "" for c in classes]
    return "<h2>Gates</h2>" + _table(GATES_HEADER, gate_rows(report, ordered), classes)


def render_html(report: dict[str, Any], timings: dict[str, Any] | None = None) -> str:
    word, error = outcome(report)
    name = str(report["recipe"]["name"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>optcli {escape(name)}: {escape(word)}</title><style>{_STYLE}</style></head><body>",
        f'<h1>optcli <code>{escape(name)}</code> <span class="verdict {word}">{escape(word)}</span></h1>',
    ]
    if error is None:
        parts.append(f"<p>{escape(headline(report).replace('`', ''))}</p>")
    else:
        code = error.get("exit_code")
        parts.append(
            f"<p><strong>The run did not finish</strong> (stage {escape(str(error.get('stage') or '-'))}, "
            f"exit {escape(str(code))}): {escape(str(error.get('message', '')))}</p>"
            "<p class='note'>What follows was measured before it stopped: not a verdict.</p>"
        )
    env = report.get("environment") or {}
    parts.append(
        f"<p class='note'>{escape(str(env.get('cpu', '?')))} ({escape(str(env.get('cpu_count', '?')))} CPUs)"
        f"; {escape(versions_text(report))}; started {escape(str(report.get('started_at') or '?'))}</p>"
    )
    if report.get("gates"):
        parts.append(gates_section(report))
    if (report.get("benchmark") or {}).get("results"):
        parts.append(latency_section(report, timings))
    elif (report.get("benchmark") or {}).get("slo"):
        parts.append(f"<h2>{escape(slo_title(report))}</h2>" + _table(SLO_HEADER, slo_rows(report)))
    if report.get("validation"):
        parts.append("<h2>Accuracy vs the baseline</h2>" + _table(VALIDATION_HEADER, validation_rows(report)))
    layers = (report.get("quantization") or {}).get("diagnosis") or []
    if layers:
        parts.append(f"<h2>Per-layer quantization error</h2>{layer_chart(layers)}")
    if report.get("warnings"):
        items = "".join(f"<li>{escape(str(w))}</li>" for w in report["warnings"])
        parts.append(f"<h2>Warnings</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
