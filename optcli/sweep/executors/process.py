"""Start a cell's process and turn its end into an Attempt (used by the local executor and by the
Ray task on its worker)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from optcli.sweep.executors.base import Attempt, CellTask, classify_exit
from optcli.sweep.launch import PARENT_ENV

LOG_NAME = "cell.log"  # the child's stdout and stderr, in its run folder
TAIL_CHARS = 2000


def start(task: CellTask, out_dir: Path) -> subprocess.Popen:
    """The child in a session of its own: a Ctrl-C at the terminal reaches the driver only, which
    then stops the cells itself (so it knows which signals it sent)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **task.env, PARENT_ENV: str(os.getpid())}
    with open(out_dir / LOG_NAME, "wb") as log:
        return subprocess.Popen(
            task.command(str(out_dir)),
            cwd=task.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def interrupt(proc: subprocess.Popen, signum: int = signal.SIGINT) -> None:
    """Signal the child's whole process group (it may have started compilers or workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signum)


def stop(proc: subprocess.Popen, grace_s: float) -> int:
    """SIGINT, then SIGKILL after `grace_s`; the exit status."""
    interrupt(proc)
    try:
        return proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        interrupt(proc, signal.SIGKILL)
        return proc.wait()


def finish(returncode: int, out_dir: Path, started: float, cancelled: bool, worker_pid: int) -> Attempt:
    return Attempt(
        exit_code=returncode,
        infra=classify_exit(returncode, cancelled),
        cancelled=cancelled,
        report=read_report(out_dir),
        log_tail=_tail(out_dir / LOG_NAME),
        worker_pid=worker_pid,
        seconds=time.monotonic() - started,
        started_at=time.time() - (time.monotonic() - started),
    )


def read_report(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - TAIL_CHARS))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
