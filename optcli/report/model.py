"""The run report: filled stage by stage, written as report.json (the CI contract) and report.md."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from optcli import __version__
from optcli.gates import GateResult

# 2: gates carry status and threshold {op, value}; started_at/ended_at, command, artifacts (bytes,
# full sha256); full digests in provenance and recipe. report.schema.json describes it.
REPORT_SCHEMA_VERSION = 2

_THRESHOLD = re.compile(r"^\s*(>=|<=|>|<|==)\s*(\S+)\s*$")


def command_record(argv: list[str]) -> dict[str, Any]:
    """How the run was started: the argv, one shell-quoted line, and the --set/-s overrides in order."""
    overrides: list[str] = []
    for i, arg in enumerate(argv):
        for flag in ("--set", "-s"):
            if arg == flag and i + 1 < len(argv):
                overrides.append(argv[i + 1])
            elif arg.startswith(flag + "=") or (flag == "-s" and arg.startswith("-s") and len(arg) > 2):
                overrides.append(arg.split("=", 1)[1] if arg.startswith(flag + "=") else arg[2:])
    program = Path(argv[0]).name if argv else "optcli"
    line = shlex.join(["optcli" if program in ("optcli", "__main__.py") else program, *argv[1:]])
    return {"argv": list(argv), "line": line, "overrides": overrides}


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class StageRecord:
    name: str
    seconds: float
    artifact: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def gate_status(gate: GateResult | dict[str, Any]) -> str:
    """pass | fail | inconclusive; records without a status (schema 1) have only `passed`."""
    record = gate if isinstance(gate, dict) else vars(gate)
    return record.get("status") or ("pass" if record.get("passed") else "fail")


def gate_record(record: dict[str, Any]) -> dict[str, Any]:
    """A gate as report.json schema 2 writes it: `status`, `threshold: {op, value}` and
    `threshold_text`, whichever form the gate's own record came in."""
    record = dict(record)
    record["status"] = gate_status(record)
    threshold = record.get("threshold")
    if isinstance(threshold, str):
        record.setdefault("threshold_text", threshold)
        record["threshold"] = _parse_threshold(threshold)
    elif isinstance(threshold, dict):
        record.setdefault("threshold_text", f"{threshold['op']} {threshold['value']:.12g}")
    return record


def _parse_threshold(text: str) -> dict[str, Any] | None:
    match = _THRESHOLD.match(text)
    try:
        return {"op": match.group(1), "value": float(match.group(2))} if match else None
    except ValueError:
        return None


@dataclass
class RunReport:
    recipe: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    stages: list[StageRecord] = field(default_factory=list)
    engines: list[dict[str, Any]] = field(default_factory=list)
    quantization: dict[str, Any] = field(default_factory=dict)
    selection: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    benchmark: dict[str, Any] = field(default_factory=dict)
    gates: list[GateResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    status: str = "running"  # running | finished | error | interrupted
    error: dict[str, Any] | None = None  # {stage, kind, message, exit_code} when status is error/interrupted
    started_at: str = field(default_factory=utc_now)  # UTC, ISO 8601
    ended_at: str | None = None  # set when the final report is written
    command: dict[str, Any] = field(default_factory=dict)  # {argv, line, overrides}
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {path, bytes, sha256, ...}
    regression: dict[str, Any] | None = None  # the table of `run --against` (optcli/compare.py)

    @property
    def verdict(self) -> str:
        statuses = {gate_status(g) for g in self.gates if g.counts}
        if "fail" in statuses:
            return "fail"
        return "inconclusive" if "inconclusive" in statuses else "pass"

    @property
    def failed_gates(self) -> list[GateResult]:
        return [g for g in self.gates if g.counts and not g.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "optcli_version": __version__,
            "status": self.status,
            "verdict": self.verdict if self.status == "finished" else "error",
            "error": self.error,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "command": self.command,
            "recipe": self.recipe,
            "environment": self.environment,
            "provenance": self.provenance,
            "artifacts": self.artifacts,
            "stages": [vars(s) for s in self.stages],
            "engines": self.engines,
            "quantization": self.quantization,
            "selection": self.selection,
            "validation": self.validation,
            "benchmark": self.benchmark,
            "regression": self.regression,
            "gates": [gate_record(g.to_dict()) for g in self.gates],
            "skipped_engines": self.skipped,
            "warnings": self.warnings,
        }
