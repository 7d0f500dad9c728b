"""What every stage may use besides its explicit inputs: the run folder, the cache, the UI, and a
place to leave stage records and warnings. Stages never read the report or another stage's
recipe section; they return typed results that the pipeline wires and reports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from optcli import interrupts
from optcli.cache import StageCache
from optcli.report.model import StageRecord
from optcli.workspace import Workspace


class UI(Protocol):
    """What the pipeline tells the person watching (the CLI draws it with rich)."""

    def stage_started(self, name: str) -> None: ...
    def stage_finished(self, record: StageRecord) -> None: ...
    def progress(self, description: str, total: int | None) -> Any: ...
    def warn(self, message: str) -> None: ...


@dataclass
class StageContext:
    workspace: Workspace
    ui: UI
    cache: StageCache
    versions: dict[str, str]  # package versions: part of every cache key
    records: list[StageRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    current_stage: str | None = None  # what report.json's `error.stage` names if the run stops now

    def enter(self, name: str) -> None:
        """A pipeline step begins; stop here if a signal arrived that library code swallowed."""
        interrupts.check()
        self.current_stage = name

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        self.enter(name)
        self.ui.stage_started(name)
        record = StageRecord(name=name, seconds=0.0)
        start = time.perf_counter()
        yield record
        interrupts.check()  # a swallowed interrupt must not be recorded as a finished stage
        record.seconds = round(time.perf_counter() - start, 3)
        self.records.append(record)
        self.ui.stage_finished(record)
