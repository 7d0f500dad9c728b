"""report.junit.xml: one testcase per gate, and an <error> testcase when the run did not finish."""

from __future__ import annotations

from typing import Any

from optcli.report.junit import JUnitCase, junit_xml
from optcli.report.tables import fmt, gate_value, threshold_text


def _describe(gate: dict[str, Any]) -> str:
    status = gate.get("status") or ("pass" if gate.get("passed") else "fail")
    interval = gate.get("interval")
    text = f"{gate['name']} on {gate['engine']}: value {fmt(gate.get('value'), 6)}"
    if interval:
        text += f" (95% interval [{fmt(interval[0])}, {fmt(interval[1])}])"
    text += f", threshold {threshold_text(gate)}: {status}"
    return text + (f"\n{gate['detail']}" if gate.get("detail") else "")


def gate_case(gate: dict[str, Any], name: str) -> JUnitCase:
    family = gate["name"].split(".", 1)[0]
    case = JUnitCase(name=name, classname=f"{family}.{gate['engine']}")
    status = gate.get("status") or ("pass" if gate.get("passed") else "fail")
    if not gate.get("counts", True):
        case.skipped = f"informational: {gate['engine']} was not the chosen candidate ({gate_value(gate)})"
    elif status == "inconclusive":
        # The recipe decides what an inconclusive gate counts as (benchmark.inconclusive).
        if gate.get("passed"):
            case.skipped = "inconclusive, counted as pass: " + _describe(gate).splitlines()[0]
        else:
            case.failure = "inconclusive: " + _describe(gate)
    elif not gate.get("passed"):
        case.failure = _describe(gate)
    else:
        case.system_out = _describe(gate)  # a pass still shows its value and threshold in the CI's view
    return case


def report_cases(report: dict[str, Any]) -> list[JUnitCase]:
    gates = report.get("gates") or []
    seen: dict[tuple[str, str], int] = {}
    for gate in gates:
        key = (gate["name"], gate["engine"])
        seen[key] = seen.get(key, 0) + 1
    cases = []
    for gate in gates:
        # Several gates of one name on one engine (one per batch size): the detail tells them apart.
        repeated = seen[(gate["name"], gate["engine"])] > 1 and gate.get("detail")
        cases.append(gate_case(gate, f"{gate['name']} ({gate['detail']})" if repeated else gate["name"]))
    status = report.get("status", "finished")
    if status != "finished":
        error = report.get("error") or {}
        message = error.get("message") or "the run has not written its final report (still running or killed)"
        kind, code = error.get("kind") or status, error.get("exit_code")
        text = f"{status}: {message}" + (f"\nkind {kind}, exit code {code}" if code is not None else "")
        stage = error.get("stage") or "run"
        cases.append(JUnitCase(name=f"optcli run ({status})", classname=f"optcli.{stage}", error=text))
    return cases


def render_junit(report: dict[str, Any]) -> str:
    return junit_xml(
        f"optcli.{report['recipe']['name']}", report_cases(report), timestamp=report.get("started_at")
    )
