"""The state one run carries from stage to stage, and the UI the stages report to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from optcli import interrupts
from optcli.recipe import Recipe
from optcli.report.model import RunReport, StageRecord
from optcli.specs import ShapeResolver
from optcli.workspace import Workspace


class UI(Protocol):
    """What the pipeline tells the person watching (the CLI draws it with rich)."""

    def stage_started(self, name: str) -> None: ...
    def stage_finished(self, record: StageRecord) -> None: ...
    def progress(self, description: str, total: int | None) -> Any: ...
    def warn(self, message: str) -> None: ...


@dataclass
class Run:
    recipe: Recipe
    workspace: Workspace
    ui: UI
    report: RunReport
    resolver: ShapeResolver
    artifacts: dict[str, Path] = field(default_factory=dict)
    precisions: dict[str, str] = field(default_factory=dict)
    output_names: list[str] = field(default_factory=list)
    trace_inputs: dict[str, Any] = field(default_factory=dict)
    trace_outputs: list[Any] = field(default_factory=list)
    torch_model: Any = None
    calibration_digests: set[bytes] = field(default_factory=set)
    runnable_build: list[Any] = field(default_factory=list)  # build entries preflight found runnable

    current_stage: str | None = None  # what report.json's `error.stage` names if the run stops now

    def enter(self, name: str) -> None:
        """A pipeline step begins; stop here if a signal arrived that library code swallowed."""
        interrupts.check()
        self.current_stage = name

    @contextmanager
    def stage(self, name: str) -> Iterator[StageRecord]:
        self.enter(name)
        self.ui.stage_started(name)
        record = StageRecord(name=name, seconds=0.0)
        start = time.perf_counter()
        yield record
        interrupts.check()  # a swallowed interrupt must not be recorded as a finished stage
        record.seconds = round(time.perf_counter() - start, 3)
        self.report.stages.append(record)
        self.ui.stage_finished(record)
