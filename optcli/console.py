"""Terminal output: one console, stage lines and progress bars (the pipeline's UI)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from optcli.report.model import StageRecord

HEARTBEAT_ENV = "OPTCLI_HEARTBEAT_S"  # seconds between "still running" lines; 0 turns them off
DEFAULT_HEARTBEAT_S = 30.0


def _make_console() -> Console:
    # Logs and CI captures are not terminals; rich would wrap tables at 80 columns there.
    probe = Console(stderr=True)
    return Console(stderr=True, highlight=False, width=None if probe.is_terminal else 140)


console = _make_console()


def heartbeat_interval() -> float:
    try:
        return float(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S))
    except ValueError:
        return DEFAULT_HEARTBEAT_S


class _Heartbeat:
    """While a stage runs, a line every `interval` seconds: in a CI log a long export or calibration
    shows no progress bar, and must not look hung (nor trip a no-output timeout)."""

    def __init__(self, interval: float, out: Console) -> None:
        self.interval, self._out = interval, out
        self._stream = _own_stream(out)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running: list[tuple[str, float]] = []  # stages nest (export loads the model): innermost last
        self._last = 0.0
        self._thread: threading.Thread | None = None

    def stage_started(self, name: str) -> None:
        with self._lock:
            self._last = time.monotonic()
            self._running.append((name, self._last))
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="optcli-heartbeat", daemon=True)
            self._thread.start()

    def stage_finished(self, name: str) -> None:
        with self._lock:
            for i in range(len(self._running) - 1, -1, -1):
                if self._running[i][0] == name:
                    del self._running[i]
                    break

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()

    def _loop(self) -> None:
        while not self._stop.wait(min(self.interval / 2, 1.0)):
            with self._lock:
                now = time.monotonic()
                if not self._running or now - self._last < self.interval:
                    continue
                self._last = now
                name, started = self._running[-1]
                line = f"... {name} still running ({now - started:.0f}s)"
            self._write(line)

    def _write(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self._stream is not None:
                self._stream.write(line + "\n")
                self._stream.flush()
            else:
                self._out.print(line, markup=False)


def _own_stream(out: Console) -> IO[str] | None:
    """A copy of the console's file descriptor: while the exporter's output goes to export.log
    (descriptors 1 and 2 point there), the heartbeat still reaches the real stderr."""
    try:
        return os.fdopen(os.dup(out.file.fileno()), "w", encoding="utf-8", errors="replace", buffering=1)
    except (AttributeError, OSError, ValueError):  # a test's in-memory stream has no descriptor
        return None


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
    """Prints one line per finished stage; progress bars for calibration, validation, benchmark in a
    terminal, a heartbeat line during long stages elsewhere. Use it as a context manager (or call
    close()) so the heartbeat stops with the run."""

    def __init__(self, out: Console = console, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        interval = heartbeat_interval()
        wanted = not quiet and not out.is_terminal and interval > 0
        self._heartbeat = _Heartbeat(interval, out) if wanted else None

    def __enter__(self) -> RichUI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.close()
            self._heartbeat = None

    def stage_started(self, name: str) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stage_started(name)
        if not self.quiet and self.out.is_terminal:
            self.out.print(f"[dim]... {name}[/]", end="\r")

    def stage_finished(self, record: StageRecord) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stage_finished(record.name)
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
