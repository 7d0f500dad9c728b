"""The executor interface: start a cell, report finished attempts, cancel everything on Ctrl-C.

Executors only decide where the cell's process runs; what its exit means is decided here, the same
for every executor: an exit status is a result (0-4, never retried), a process or worker that died
of a signal the sweep did not send is an infrastructure failure (retried by the driver)."""

from __future__ import annotations

import abc
import signal
from dataclasses import dataclass, field
from typing import Any

# A child that exits 128+N after a SIGINT/SIGTERM the sweep did not send was stopped from outside.
_SIGNAL_EXITS = {128 + signal.SIGINT: "SIGINT", 128 + signal.SIGTERM: "SIGTERM"}


@dataclass(frozen=True)
class CellTask:
    """What a worker needs to run one cell (picklable: Ray ships it to the worker)."""

    cell_id: str
    argv: list[str]  # `optcli run ...` without --out
    out_dir: str
    cwd: str
    env: dict[str, str] = field(default_factory=dict)  # added to the worker's environment
    resources: dict[str, Any] = field(default_factory=dict)

    def command(self, out_dir: str | None = None) -> list[str]:
        return [*self.argv, "--out", out_dir or self.out_dir]


@dataclass
class Attempt:
    """One try at a cell."""

    exit_code: int | None  # the child's exit status; None when it has none (worker died)
    infra: str | None = None  # why this try counts as an infrastructure failure
    cancelled: bool = False  # stopped by the sweep (Ctrl-C)
    report: dict[str, Any] | None = None  # the cell's report.json
    log_tail: str = ""
    node: str | None = None  # Ray node id, or the host name
    worker_pid: int | None = None
    seconds: float = 0.0
    started_at: float | None = None  # wall clock (time.time()) when the process started
    driver_seconds: float | None = None  # from the driver's start() to the result (scheduling included)
    files: dict[str, bytes] = field(default_factory=dict)  # run-folder files sent back by a worker

    def record(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "infra_error": self.infra,
            "cancelled": self.cancelled,
            "node": self.node,
            "worker_pid": self.worker_pid,
            "seconds": round(self.seconds, 3),
            "started_at": self.started_at,
            "driver_seconds": None if self.driver_seconds is None else round(self.driver_seconds, 3),
        }


def classify_exit(returncode: int, cancelled: bool) -> str | None:
    """The infrastructure failure an exit status means, or None for a result (or our own cancel)."""
    if cancelled:
        return None
    if returncode < 0:
        return f"the cell's process was killed by {signal.Signals(-returncode).name}"
    if returncode in _SIGNAL_EXITS:
        return f"the cell's process was stopped by a {_SIGNAL_EXITS[returncode]} the sweep did not send"
    return None


class Executor(abc.ABC):
    name: str = ""
    capacity: int = 1  # cells at once

    @abc.abstractmethod
    def start(self, task: CellTask) -> None: ...

    @abc.abstractmethod
    def running(self) -> int: ...

    @abc.abstractmethod
    def poll(self, timeout: float) -> list[tuple[str, Attempt]]:
        """Attempts that ended (by cell id), waiting up to `timeout` seconds for the first."""

    @abc.abstractmethod
    def cancel(self, grace_s: float) -> list[tuple[str, Attempt]]:
        """Stop every running cell (SIGINT, so each writes its interrupted report.json; killed after
        `grace_s`) and return their attempts."""

    def check(self, task: CellTask) -> str | None:
        """Why the task can never run here (e.g. no node has its resources), or None."""
        return None

    def close(self) -> None:
        return None
