"""The default executor: up to `concurrency` cell processes at once on this machine."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from optcli.sweep.executors import process
from optcli.sweep.executors.base import Attempt, CellTask, Executor


@dataclass
class _Running:
    task: CellTask
    proc: subprocess.Popen
    started: float
    cancelled: bool = False


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, concurrency: int) -> None:
        self.capacity = concurrency
        self._running: dict[str, _Running] = {}
        self._host = socket.gethostname()

    def start(self, task: CellTask) -> None:
        proc = process.start(task, Path(task.out_dir))
        self._running[task.cell_id] = _Running(task, proc, time.monotonic())

    def running(self) -> int:
        return len(self._running)

    def poll(self, timeout: float) -> list[tuple[str, Attempt]]:
        deadline = time.monotonic() + timeout
        while True:
            done = [(cid, r) for cid, r in self._running.items() if r.proc.poll() is not None]
            if done or time.monotonic() >= deadline or not self._running:
                return [self._finish(cid, r) for cid, r in done]
            time.sleep(0.05)

    def cancel(self, grace_s: float) -> list[tuple[str, Attempt]]:
        for running in self._running.values():
            running.cancelled = True
            process.interrupt(running.proc)
        deadline = time.monotonic() + grace_s
        for running in self._running.values():
            try:
                running.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.interrupt(running.proc, process.signal.SIGKILL)
                running.proc.wait()
        return [self._finish(cid, r) for cid, r in list(self._running.items())]

    def _finish(self, cell_id: str, running: _Running) -> tuple[str, Attempt]:
        del self._running[cell_id]
        out = Path(running.task.out_dir)
        attempt = process.finish(
            running.proc.returncode, out, running.started, running.cancelled, running.proc.pid
        )
        attempt.node = self._host
        return cell_id, attempt

    def close(self) -> None:
        if self._running:
            self.cancel(grace_s=10)
