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
    # Seconds spent in stages nested in each open stage (the model's load inside the export): a
    # stage's record counts its own time only, so that the records add up to the run's.
    _nested_s: list[float] = field(default_factory=list)

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
        self._nested_s.append(0.0)
        try:
            yield record
        finally:
            nested = self._nested_s.pop()
        interrupts.check()  # a swallowed interrupt must not be recorded as a finished stage
        elapsed = time.perf_counter() - start
        if self._nested_s:
            self._nested_s[-1] += elapsed
        record.seconds = round(elapsed - nested, 3)
        self.records.append(record)
        self.ui.stage_finished(record)
