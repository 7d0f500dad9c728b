"""One run at a time per run folder: an flock on `<run>/.optcli.lock`, which names its holder.

The kernel releases an flock when its holder dies, so a crashed run never blocks the next one;
the pid, host and start time written into the file are there to say who holds it (or held it).
The file is kept (truncated) on release: deleting a lock file races with a process about to lock it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from optcli.errors import UserInputError

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None

LOCK_NAME = ".optcli.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie counts as dead)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: str
    command: str = ""

    @classmethod
    def me(cls) -> Holder:
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        return cls(os.getpid(), socket.gethostname(), started, " ".join(["optcli", *sys.argv[1:]])[:300])

    @classmethod
    def parse(cls, text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return cls(
                int(data["pid"]), str(data["host"]), str(data["started"]), str(data.get("command", ""))
            )
        except (ValueError, KeyError, TypeError):
            return None

    def alive(self) -> bool | None:
        """True/False on this host; None when it ran on another host (cannot tell)."""
        return pid_alive(self.pid) if self.host == socket.gethostname() else None

    def describe(self) -> str:
        return f"optcli pid {self.pid} on host {self.host}, started {self.started}"


def _read(fd: int) -> Holder | None:
    return Holder.parse(os.pread(fd, 4096, 0).decode("utf-8", "replace"))


def _busy_message(root: Path, holder: Holder | None) -> str:
    if holder is None:
        return f"run folder '{root}' is in use by another optcli run (its lock file names no holder)"
    text = f"run folder '{root}' is in use by {holder.describe()}"
    if holder.command:
        text += f" ({holder.command})"
    if holder.alive() is False:  # a process it forked still holds the inherited lock
        text += f"; pid {holder.pid} has exited but a process it started still holds the lock"
    return text


class RunLock:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_NAME
        self._fd: int | None = None
        self.previous: Holder | None = None  # a run that held the folder and died without releasing it

    def acquire(self, *, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> None:
        if fcntl is None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                message = _busy_message(self.root, _read(fd))
                if not wait:
                    raise UserInputError(
                        message, hint="let it finish, pass --wait to queue behind it, or use another --out"
                    ) from None
                if on_wait is not None:
                    on_wait(f"{message}; waiting for it to finish (--wait)")
                fcntl.flock(fd, fcntl.LOCK_EX)  # a signal interrupts the wait (the handler raises)
            self.previous = _read(fd)  # released without truncation: its holder died mid-run
            data = json.dumps(vars(Holder.me())).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # an empty file: no holder
        finally:
            os.close(fd)  # closing releases the flock

    @contextmanager
    def held(self, *, wait: bool = False, on_wait: Callable[[str], None] | None = None) -> Iterator[RunLock]:
        self.acquire(wait=wait, on_wait=on_wait)
        try:
            yield self
        finally:
            self.release()
