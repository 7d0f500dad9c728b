"""Rows of the LLM report's tables (report.json `llm`), shared by the terminal and report.md."""

from __future__ import annotations

from typing import Any

from optcli.report.tables import fmt, pct

ACCURACY_HEADER = ["scheme", "format", "MiB", "size ratio", "quantize s", "peak RSS MiB", "perplexity"]
ACCURACY_HEADER += ["ppl increase", "token agree", "KL"]
SPEED_HEADER = ["model", "prefill tok/s", "decode tok/s", "TTFT ms", "prefill x", "decode x"]


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value / (1 << 20):.2f}"


def accuracy_rows(llm: dict[str, Any]) -> list[list[str]]:
    base_bytes = (llm.get("model") or {}).get("baseline_bytes")
    rows = [
        [
            "baseline (fp32)",
            "safetensors",
            _mib(base_bytes),
            "1",
            "-",
            "-",
            fmt(llm.get("baseline_perplexity")),
        ]
    ]
    rows[0] += ["0", "100.00%", "0"]
    for scheme, entry in (llm.get("schemes") or {}).items():
        m = entry.get("metrics") or {}
        rows.append(
            [
                scheme,
                str((entry.get("quantization_config") or {}).get("format") or "-"),
                _mib(entry.get("bytes")),
                fmt(entry.get("size_ratio"), 3),
                fmt(entry.get("quantize_seconds"), 3),
                fmt(entry.get("peak_rss_mb"), 4),
                fmt(m.get("perplexity")),
                pct(m.get("ppl_increase")),
                pct(m.get("token_agreement")),
                fmt(m.get("kl"), 3),
            ]
        )
    return rows


def speed_rows(llm: dict[str, Any]) -> list[list[str]]:
    results = (llm.get("benchmark") or {}).get("results") or {}
    return [
        [
            name,
            fmt(r.get("prefill_tokens_per_s")),
            fmt(r.get("decode_tokens_per_s")),
            fmt(r.get("ttft_ms")),
            fmt(r.get("prefill_speedup"), 3) + "x",
            fmt(r.get("decode_speedup"), 3) + "x",
        ]
        for name, r in results.items()
    ]


def titles(llm: dict[str, Any]) -> tuple[str, str]:
    data = (llm.get("data") or {}).get("validation") or {}
    accuracy = f"Checkpoints vs the FP32 baseline ({data.get('windows', '?')} held-out windows of "
    accuracy += f"{data.get('seq_len', '?')} tokens, saved checkpoints loaded back)"
    bench = llm.get("benchmark") or {}
    first = next(iter((bench.get("results") or {}).values()), {})
    speed = f"Tokens/s ({bench.get('engine', '?')}, {bench.get('threads', '?')} threads, prompt "
    speed += f"{first.get('prompt_tokens', '?')} tokens, {first.get('new_tokens', '?')} new)"
    return accuracy, speed


def markdown_sections(report: dict[str, Any], table: Any) -> list[str]:
    """report.md's LLM sections; `table(header, rows)` is the renderer's own table function."""
    llm = report.get("llm")
    if not llm:
        return []
    accuracy, speed = titles(llm)
    parts = ["", f"### {accuracy}", "", table(ACCURACY_HEADER, accuracy_rows(llm))]
    if llm.get("note"):
        parts += ["", f"Note: {llm['note']}."]
    if llm.get("benchmark"):
        parts += ["", f"### {speed}", "", table(SPEED_HEADER, speed_rows(llm))]
    return parts


def terminal_tables(report: dict[str, Any], table: Any) -> list[Any]:
    """The terminal's LLM tables; `table(title, header, rows)` is the renderer's own."""
    llm = report.get("llm")
    if not llm:
        return []
    accuracy, speed = titles(llm)
    tables = [table(accuracy, ACCURACY_HEADER, accuracy_rows(llm))]
    if llm.get("benchmark"):
        tables.append(table(speed, SPEED_HEADER, speed_rows(llm)))
    return tables
