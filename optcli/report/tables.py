"""Rows shared by the terminal and Markdown renderers, built from report.json data."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 4) -> str:
    value = number(value)
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def number(value: Any) -> Any:
    """A metric as written in report.json: non-finite floats are the strings "NaN"/"Infinity"/"-Infinity"."""
    if isinstance(value, str):
        return {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(value, value)
    return value


def pct(value: float | None) -> str:
    value = number(value)
    return "-" if value is None else f"{100 * value:.2f}%"


VALIDATION_HEADER = [
    "engine",
    "precision",
    "cosine",
    "max abs",
    "rel L2",
    "SNR dB",
    "top-1 agree",
    "accuracy",
]


def validation_rows(report: dict[str, Any]) -> list[list[str]]:
    validation = report.get("validation") or {}
    rows = []
    baseline = validation.get("baseline") or {}
    if baseline:
        rows.append(
            [
                baseline["engine"] + " (baseline)",
                "fp32",
                "1",
                "0",
                "0",
                "inf",
                "100.00%",
                pct(baseline.get("accuracy")),
            ]
        )
    for entry in validation.get("engines", []):
        m = entry["metrics"]
        rows.append(
            [
                entry["engine"],
                entry.get("precision_detail") or entry["precision"],
                fmt(m.get("cosine"), 6) + _worst_sample(m),
                fmt(m.get("max_abs")),
                fmt(m.get("rel_l2")),
                fmt(m.get("snr_db"), 3),
                pct(m.get("top1_agreement")),
                pct(m.get("accuracy")),
            ]
        )
    return rows


def _worst_sample(metrics: dict[str, Any]) -> str:
    """The worst single sample's cosine beside the global one (absent in older reports)."""
    worst = metrics.get("cosine_min")
    return "" if worst is None else f" (worst {fmt(worst, 4)})"


BENCHMARK_HEADER = [
    "engine",
    "batch",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "mean ms",
    "throughput/s",
    "speedup",
]


def benchmark_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for r in (report.get("benchmark") or {}).get("results", []):
        lat = r["latency_ms"]
        rows.append(
            [
                r["engine"],
                str(r["batch_size"]),
                f"{lat['p50']:.3f}",
                f"{lat['p90']:.3f}",
                f"{lat['p99']:.3f}",
                f"{lat['mean']:.3f}",
                f"{r['throughput']:.1f}",
                speedup_text(r),
            ]
        )
    return rows


SLO_HEADER = ["engine", "batch", "threads", "p99 ms", "samples/s", "vs baseline"]


def slo_title(report: dict[str, Any]) -> str:
    slo = (report.get("benchmark") or {}).get("slo") or {}
    where = f"{slo.get('samples')} samples of {slo.get('data')}"
    return f"Throughput at p99 <= {fmt(slo.get('p99_ms'))} ms ({where})"


def slo_rows(report: dict[str, Any]) -> list[list[str]]:
    """benchmark.mode slo: each engine's best batch and threads within the budget."""
    rows = []
    for r in ((report.get("benchmark") or {}).get("slo") or {}).get("results", []):
        met = r.get("batch_size") is not None
        rows.append(
            [
                r["engine"],
                str(r["batch_size"]) if met else "none meets",
                str(r["threads"] or "default") if met else "-",
                fmt(r.get("p99_ms"), 3),
                f"{number(r['throughput']):.0f}",
                "-" if r.get("speedup") is None else f"{number(r['speedup']):.2f}x",
            ]
        )
    return rows


def speedup_text(result: dict[str, Any]) -> str:
    """'1.57x', with the bootstrap 95% interval when the benchmark measured one."""
    speedup, interval = number(result.get("speedup")), result.get("speedup_ci")
    if speedup is None:
        return "-"
    text = f"{speedup:.2f}x"
    return f"{text} [{number(interval[0]):.2f}, {number(interval[1]):.2f}]" if interval else text


GATES_HEADER = ["gate", "engine", "detail", "value", "threshold", "result"]


def threshold_text(gate: dict[str, Any]) -> str:
    """The human form of a gate's threshold, from schema 2's {op, value} or schema 1's string."""
    if gate.get("threshold_text"):
        return gate["threshold_text"]
    threshold = gate.get("threshold")
    if isinstance(threshold, dict):
        return f"{threshold.get('op')} {fmt(threshold.get('value'), 12)}"
    return str(threshold or "")


def gate_value(gate: dict[str, Any]) -> str:
    """The value, with its 95% interval when the gate was decided on one."""
    interval = gate.get("interval")
    text = fmt(gate.get("value"), 6)
    return f"{text} [{fmt(interval[0])}, {fmt(interval[1])}]" if interval else text


def gate_result(gate: dict[str, Any]) -> str:
    if not gate.get("counts", True):
        return "info (not chosen)"
    status = gate.get("status") or ("pass" if gate.get("passed") else "fail")
    if status == "inconclusive":
        return "inconclusive (counted as pass)" if gate.get("passed") else "INCONCLUSIVE"
    return "pass" if status == "pass" else "FAIL"


def gate_rows(report: dict[str, Any], gates: list[dict[str, Any]] | None = None) -> list[list[str]]:
    return [
        [
            g["name"],
            g["engine"],
            g.get("detail", ""),
            gate_value(g),
            threshold_text(g),
            gate_result(g),
        ]
        for g in (report.get("gates", []) if gates is None else gates)
    ]


def gate_failed(gate: dict[str, Any]) -> bool:
    """A counted gate that did not pass: the exit code's reason."""
    return gate.get("counts", True) and not gate.get("passed")


STAGES_HEADER = ["stage", "seconds", "artifact"]


def stage_rows(report: dict[str, Any]) -> list[list[str]]:
    return [[s["name"], f"{s['seconds']:.2f}", s.get("artifact") or ""] for s in report.get("stages", [])]


SELECTION_HEADER = ["rank", "engine", "precision", "p50 ms", "speedup", "result"]


def selection_rows(report: dict[str, Any]) -> list[list[str]]:
    ranking = (report.get("selection") or {}).get("ranking", [])
    return [
        [str(i + 1), r["engine"], r["precision"], fmt(r["p50_ms"]), fmt(r["speedup"], 3) + "x", r["reason"]]
        for i, r in enumerate(ranking)
    ]


# What a run that did not finish says instead of a verdict (report.json `status`).
UNFINISHED = {
    "error": "ERROR",
    "interrupted": "INTERRUPTED",
    "running": "INCOMPLETE",
}
NO_FINAL_REPORT = (
    "the run has not written its final report: it is still running, or it was killed before it "
    "could (SIGKILL, out of memory, power loss); no verdict"
)
ERROR_HEADER = ["status", "stage", "kind", "exit code"]


def outcome(report: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The headline word (PASS, FAIL, INCONCLUSIVE, ERROR, INTERRUPTED, INCOMPLETE) and, for a run
    that did not finish, its error record ({stage, kind, message, exit_code[, hint]})."""
    status = report.get("status", "finished")
    if status == "finished":
        verdict = report.get("verdict")
        return {"pass": "PASS", "inconclusive": "INCONCLUSIVE"}.get(verdict, "FAIL"), None
    error = dict(report.get("error") or {})
    if status == "running" and not error.get("message"):
        error["message"] = NO_FINAL_REPORT
    return UNFINISHED.get(status, str(status).upper()), error


def error_rows(report: dict[str, Any], error: dict[str, Any]) -> list[list[str]]:
    code = error.get("exit_code")
    return [
        [
            str(report.get("status", "")),
            str(error.get("stage") or "-"),
            str(error.get("kind") or "-"),
            "-" if code is None else str(code),
        ]
    ]
