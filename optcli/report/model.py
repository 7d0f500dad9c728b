"""The run report: filled stage by stage, written as report.json (the CI contract) and report.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optcli import __version__
from optcli.gates import GateResult

REPORT_SCHEMA_VERSION = 1


@dataclass
class StageRecord:
    name: str
    seconds: float
    artifact: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


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

    @property
    def verdict(self) -> str:
        return "pass" if all(g.passed for g in self.gates if g.counts) else "fail"

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
            "recipe": self.recipe,
            "environment": self.environment,
            "provenance": self.provenance,
            "stages": [vars(s) for s in self.stages],
            "engines": self.engines,
            "quantization": self.quantization,
            "selection": self.selection,
            "validation": self.validation,
            "benchmark": self.benchmark,
            "gates": [g.to_dict() for g in self.gates],
            "skipped_engines": self.skipped,
            "warnings": self.warnings,
        }
