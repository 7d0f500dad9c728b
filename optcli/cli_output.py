"""What `optcli` prints for CI: the verdict line and the artifact to deploy, the `--json` summary
object, and GitHub Actions annotations (`::error file=,line=::`)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

MAX_NAMED = 3  # failed gates the verdict line names; report.json lists every one


# ------------------------------------------------------------------------------ the run's outcome


def deploy_artifact(report: dict[str, Any]) -> dict[str, Any] | None:
    """{path, engine}: with a target, the chosen candidate's artifact; else the one file every
    engine ran. None when nothing was chosen, or the engines ran different files (a comparison)."""
    engines = [e for e in report.get("engines") or [] if not e.get("baseline")]
    chosen = (report.get("selection") or {}).get("chosen")
    if chosen is not None:
        engines = [e for e in engines if e.get("label") == chosen]
    elif (report.get("selection") or {}).get("target"):
        return None  # a target with no passing candidate
    paths = {e.get("path") for e in engines}
    if len(paths) != 1 or None in paths:
        return None
    return {"path": paths.pop(), "engine": ", ".join(e["label"] for e in engines)}


def not_passed(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Counted gates that decide exit 1 (status fail, or inconclusive the recipe does not let pass)."""
    return [g for g in report.get("gates") or [] if g.get("counts", True) and not g.get("passed")]


def inconclusive(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        g for g in report.get("gates") or [] if g.get("counts", True) and g.get("status") == "inconclusive"
    ]


def gate_phrase(gate: dict[str, Any]) -> str:
    """'benchmark.speedup on ort-int8 = 1.9 (95% 1.7..2.1), needs >= 2'."""
    threshold = gate.get("threshold_text") or gate.get("threshold")
    if isinstance(threshold, dict):
        threshold = f"{threshold.get('op')} {threshold.get('value'):.12g}"
    value = gate.get("value")
    text = f"{gate.get('name')} on {gate.get('engine')} = {_num(value)}"
    if gate.get("interval"):
        lo, hi = gate["interval"]
        text += f" (95% {_num(lo)}..{_num(hi)})"
    status = gate.get("status") or ("pass" if gate.get("passed") else "fail")
    return text + (", inconclusive vs " if status == "inconclusive" else ", needs ") + str(threshold)


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "none"


def verdict_lines(report: dict[str, Any], report_path: Path, code: int, *, quiet: bool) -> list[str]:
    """Rich markup: the verdict with the gates that did not pass named, the report path, and last the
    artifact to deploy. One line with --quiet."""
    from optcli.report.terminal import verdict_line

    line = verdict_line(report)
    failed = not_passed(report)
    if failed:
        more = f"; and {len(failed) - MAX_NAMED} more" if len(failed) > MAX_NAMED else ""
        line += ": " + escape("; ".join(gate_phrase(g) for g in failed[:MAX_NAMED]) + more)
    skipped = report.get("skipped_engines") or []
    if skipped:
        line += f" [yellow]({len(skipped)} engine(s) skipped, not run)[/]"
    line += f"  report: {escape(str(report_path))}"
    artifact = deploy_artifact(report) if code == 0 else None
    if artifact is None:
        return [line]
    deploy = escape(f"deploy: {artifact['path']} ({artifact['engine']})")
    return [f"{line}  {deploy}"] if quiet else [line, deploy]


def run_summary(report: dict[str, Any], report_path: Path, code: int) -> dict[str, Any]:
    """The --json object of `optcli run`."""
    artifact = deploy_artifact(report)
    return {
        "command": "run",
        "verdict": report.get("verdict"),
        "exit_code": code,
        "report": str(report_path),
        "artifact": artifact["path"] if artifact else None,
        "engine": artifact["engine"] if artifact else None,
        "failed_gates": [_gate_record(g) for g in not_passed(report)],
        "inconclusive_gates": [_gate_record(g) for g in inconclusive(report)],
        "skipped_engines": [s.get("engine") for s in report.get("skipped_engines") or []],
        "error": None,
    }


def diagnose_summary(report_path: Path, layers: list[dict[str, Any]]) -> dict[str, Any]:
    """The --json object of `optcli diagnose`: the worst layers first."""
    return {
        "command": "diagnose",
        "verdict": None,  # no gates decide a diagnosis
        "exit_code": 0,
        "report": str(report_path),
        "artifact": None,
        "failed_gates": [],
        "layers": layers,
        "error": None,
    }


def _gate_record(gate: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "engine", "value", "status", "threshold", "threshold_text", "interval", "detail")
    return {k: gate[k] for k in keys if k in gate}


# ---------------------------------------------------------------------------- --json: stdout is one object


class JsonOutput:
    """While a --json command runs, descriptor 1 points at stderr (so nothing a library prints,
    from Python or C, reaches stdout); `emit` writes the one summary object to the real stdout."""

    def __init__(self, command: str, report: Path | None = None) -> None:
        self.command, self.report = command, report
        self.started_ns = time.time_ns()
        self._saved: int | None = None
        self._python_stdout = sys.stdout
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stdout.flush()
            fd = sys.stdout.fileno()
            self._saved = os.dup(fd)
            os.dup2(sys.stderr.fileno(), fd)
        sys.stdout = sys.stderr

    def emit(self, summary: dict[str, Any]) -> None:
        global _active
        _active = None
        sys.stdout.flush()
        sys.stdout = self._python_stdout
        if self._saved is not None:
            os.dup2(self._saved, self._python_stdout.fileno())
            os.close(self._saved)
            self._saved = None
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
        sys.stdout.flush()

    def emit_error(self, kind: str, code: int, message: str, hint: str | None) -> None:
        """The summary of a command that stopped with an error (exit 2, 3, 4, 130...)."""
        report = self.report if self.report is not None and self._written_now(self.report) else None
        self.emit(
            {
                "command": self.command,
                "verdict": "interrupted" if kind == "interrupted" else "error",
                "exit_code": code,
                "report": str(report) if report else None,
                "artifact": None,
                "engine": None,
                "failed_gates": [],
                "error": {"kind": kind, "message": message, "hint": hint},
            }
        )

    def _written_now(self, path: Path) -> bool:
        """report.json of this command (a run that got as far as locking the folder), not a previous one."""
        try:
            return path.stat().st_mtime_ns >= self.started_ns - 10_000_000
        except OSError:
            return False


_active: JsonOutput | None = None


def json_output(command: str, report: Path | None = None) -> JsonOutput:
    global _active
    _active = JsonOutput(command, report)
    return _active


def active_json() -> JsonOutput | None:
    return _active


def finish_unfinished(code: int) -> None:
    """A --json command that ended without its summary (an early exit): still one object on stdout."""
    if _active is not None:
        verdict = "pass" if code == 0 else "error"
        _active.emit({"command": _active.command, "verdict": verdict, "exit_code": code})


# --------------------------------------------------------------------------- GitHub Actions annotations


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS", "").lower() not in ("", "0", "false")


def annotate(
    message: str, *, file: str | None = None, line: int | None = None, title: str = "optcli"
) -> None:
    """One `::error` workflow command on stderr (the runner reads both streams; stdout may be --json)."""
    if not in_github_actions():
        return
    props = [f"title={_escape_property(title)}"]
    if file:
        props.insert(0, f"file={_escape_property(_workspace_relative(file))}")
        if line is not None:
            props.insert(1, f"line={line}")
    sys.stderr.write(f"::error {','.join(props)}::{_escape_data(message)}\n")
    sys.stderr.flush()


def annotate_exception(exc: BaseException, message: str) -> None:
    """A recipe error at its file and line (each problem of several); any other error untied to a file."""
    problems = getattr(exc, "problems", None) or [exc]
    for problem in problems:
        file = getattr(problem, "file", None)
        if file and Path(file).is_file():  # not '<recipe>', '--set' or 'recipe.yaml (--set build)'
            line = getattr(problem, "line", None)
            annotate(_without_location(problem), file=file, line=line, title="optcli recipe")
        else:
            annotate(message if problem is exc else str(getattr(problem, "message", problem)))


def annotate_gates(report: dict[str, Any]) -> None:
    for gate in not_passed(report):
        annotate(gate_phrase(gate), title="optcli gate")


def _without_location(problem: Any) -> str:
    """'recipe.yaml:4: field 'x': msg' -> "field 'x': msg" (the annotation carries file and line)."""
    message = str(getattr(problem, "message", problem))
    where = str(problem.file) + (f":{problem.line}" if problem.line is not None else "")
    return message.removeprefix(f"{where}: ")


def _workspace_relative(file: str) -> str:
    """GitHub places annotations by the path from the repository root (GITHUB_WORKSPACE)."""
    path = Path(file)
    root = os.environ.get("GITHUB_WORKSPACE")
    with contextlib.suppress(ValueError, OSError):
        if root:
            return str(path.resolve().relative_to(Path(root).resolve()))
    return file


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
