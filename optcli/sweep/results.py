"""The sweep's results: one record per cell, written after every finished cell as sweep.json,
sweep.md and sweep.junit.xml (each atomically: a killed driver leaves a consistent partial sweep),
and each finished cell's key in `<cell>/cell.json`, which `--resume` reads."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optcli.atomic import atomic_write
from optcli.report.junit import JUnitCase, write_junit
from optcli.sweep.cells import Cell
from optcli.sweep.executors.base import Attempt
from optcli.sweep.summary import cell_text, summarize
from optcli.workspace import strict_json

SCHEMA_VERSION = 1
INFRA_EXIT = 5  # a cell whose worker or node died on every attempt (4 stays "a bug in optcli")
CELL_FILE = "cell.json"


@dataclass
class CellRecord:
    cell: Cell
    status: str = "pending"  # pending | running | finished | error | interrupted | resumed | not run
    exit_code: int | None = None
    attempts: list[Attempt] = field(default_factory=list)
    report: dict[str, Any] | None = None
    message: str = ""

    @property
    def summary(self) -> dict[str, Any]:
        return summarize(self.report)

    @property
    def text(self) -> str:
        return cell_text(self.summary, self.status, self.exit_code)

    def to_dict(self) -> dict[str, Any]:
        cell = self.cell
        return {
            "id": cell.id,
            "model": cell.model,
            "variant": cell.variant,
            "recipe": str(cell.recipe),
            "overrides": cell.overrides,
            "resources": cell.resources.model_dump(mode="json", exclude_none=True),
            "key": cell.key,
            "run_dir": str(cell.out_dir),
            "status": self.status,
            "exit_code": self.exit_code,
            "message": self.message,
            "seconds": round(sum(a.seconds for a in self.attempts), 3),
            "attempts": [a.record() for a in self.attempts],
            **self.summary,
        }


@dataclass
class SweepState:
    name: str
    sweep_file: str
    out_dir: Path
    executor: str
    records: list[CellRecord]
    status: str = "running"  # running | finished | interrupted
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    exit_code: int | None = None

    def worst(self) -> int:
        """The sweep's exit code: the worst cell (0 < 1 < 2 < 3 < 4 < 5)."""
        codes = [r.exit_code for r in self.records if r.exit_code is not None]
        return max(codes, default=0)

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for record in self.records:
            counts[record.status] = counts.get(record.status, 0) + 1
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "sweep_file": self.sweep_file,
            "executor": self.executor,
            "status": self.status,
            "exit_code": self.exit_code,
            "started": self.started,
            "counts": counts,
            "models": list(dict.fromkeys(r.cell.model for r in self.records)),
            "variants": list(dict.fromkeys(r.cell.variant for r in self.records)),
            "cells": [r.to_dict() for r in self.records],
        }

    def write(self) -> None:
        from optcli.sweep.matrix import markdown

        data = self.to_dict()
        _atomic(self.out_dir / "sweep.json", json.dumps(strict_json(data), indent=2, default=str) + "\n")
        _atomic(self.out_dir / "sweep.md", markdown(data, self.records))
        write_junit(self.out_dir / "sweep.junit.xml", f"optcli sweep {self.name}", self.junit_cases())

    def junit_cases(self) -> list[JUnitCase]:
        cases = []
        for record in self.records:
            case = JUnitCase(
                name=record.cell.variant,
                classname=f"{self.name}.{record.cell.model}",
                time_s=sum(a.seconds for a in record.attempts),
                system_out=f"{record.text}\nrun folder: {record.cell.out_dir}",
            )
            if record.status in ("pending", "not run"):
                case.skipped = "not run (the sweep was interrupted first)"
            elif record.status == "interrupted":
                case.error = "interrupted"
            elif record.status == "resumed":
                case.system_out = "passed earlier with the same key (--resume)\n" + (case.system_out or "")
            elif record.exit_code == 1:
                case.failure = "failed gates: " + ", ".join(record.summary.get("failed_gates") or [])
            elif record.exit_code:
                case.error = f"exit {record.exit_code}: {record.message}"
            cases.append(case)
        return cases


def write_cell_file(record: CellRecord) -> None:
    data = {"id": record.cell.id, "key": record.cell.key, "exit_code": record.exit_code, **record.to_dict()}
    _atomic(record.cell.out_dir / CELL_FILE, json.dumps(strict_json(data), indent=2, default=str) + "\n")


def passed_before(cell: Cell) -> dict[str, Any] | None:
    """The cell's report.json when its last run passed with the same key (what --resume skips)."""
    try:
        previous = json.loads((cell.out_dir / CELL_FILE).read_text(encoding="utf-8"))
        report = json.loads((cell.out_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = cell.key is not None and previous.get("key") == cell.key and previous.get("exit_code") == 0
    finished = report.get("status") == "finished" and report.get("verdict") in ("pass", "inconclusive")
    return report if same and finished else None


def _atomic(path: Path, text: str) -> None:
    atomic_write(path, text)
