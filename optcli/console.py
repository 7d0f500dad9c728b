"""Terminal output: one console, stage lines and progress bars (the pipeline's UI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from optcli.report.model import StageRecord


def _make_console() -> Console:
    # Logs and CI captures are not terminals; rich would wrap tables at 80 columns there.
    probe = Console(stderr=True)
    return Console(stderr=True, highlight=False, width=None if probe.is_terminal else 140)


console = _make_console()


class _Bar:
    def __init__(self, progress: Progress | None, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class RichUI:
    """Prints one line per finished stage; progress bars for calibration, validation, benchmark."""

    def __init__(self, out: Console = console, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet

    def stage_started(self, name: str) -> None:
        if not self.quiet and self.out.is_terminal:
            self.out.print(f"[dim]... {name}[/]", end="\r")

    def stage_finished(self, record: StageRecord) -> None:
        if self.quiet:
            return
        summary = record.details.get("summary") if isinstance(record.details, dict) else None
        artifact = f" -> {Path(record.artifact).name}" if record.artifact else ""
        extra = f"  [dim]{summary}[/]" if summary else ""
        self.out.print(f"[green]ok[/] {record.name:<28} {record.seconds:7.2f}s{artifact}{extra}")

    def progress(self, description: str, total: int | None) -> _Bar:
        if self.quiet or not self.out.is_terminal:
            return _Bar(None, None)
        progress = Progress(
            TextColumn("  {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.out,
            transient=True,
        )
        task = progress.add_task(description, total=total)
        progress.start()
        return _Bar(progress, task)

    def warn(self, message: str) -> None:
        self.out.print(f"[yellow]warning:[/] {message}")


class SilentUI(RichUI):
    def __init__(self) -> None:
        super().__init__(Console(quiet=True), quiet=True)
