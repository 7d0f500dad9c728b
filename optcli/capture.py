"""Third-party output goes to a log file, not the terminal.

torch prints from Python (`print(..., file=sys.stderr)`, warnings, its loggers) and from C++ (the
process's file descriptors 1 and 2), so both levels are redirected. The log is written under a
temporary name and renamed when the block ends (also on error or Ctrl-C, with a last line saying
how it ended), so an `export.log` is always a whole one; a crash leaves only a `.partial` file.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from optcli.chain import find_interrupt

PARTIAL_SUFFIX = ".partial"


@dataclass
class Captured:
    path: Path | None  # the log once the block has ended; None when the output is discarded
    warnings: list[warnings.WarningMessage] = field(default_factory=list)


@contextlib.contextmanager
def captured_output(
    log_path: Path | None, *, title: str, loggers: Sequence[str] = (), level: int = logging.INFO
) -> Iterator[Captured]:
    """Send everything printed inside the block to `log_path` (or nowhere, when it is None).

    Records of `loggers` (and their children) at `level` and up, and every warning, are written to
    the log too; the warnings are also kept in `Captured.warnings` for the caller to inspect."""
    from optcli import interrupts

    stream, partial = _open(log_path)
    captured = Captured(path=log_path)
    stream.write(f"# {title} (pid {os.getpid()}, {datetime.datetime.now().isoformat(timespec='seconds')})\n")
    ending = "finished"
    try:
        with _fd_redirect(stream), _python_redirect(stream, captured, loggers, level):
            yield captured
    except BaseException as exc:
        interrupted = find_interrupt(exc) is not None or interrupts.received() is not None
        ending = "interrupted" if interrupted else f"failed: {type(exc).__name__}"
        raise
    finally:
        with interrupts.deferred():  # the terminal's descriptors are back; now finish the file whole
            stream.write(f"# {ending}\n")
            stream.close()
            if partial is not None and log_path is not None:
                os.replace(partial, log_path)


def _open(log_path: Path | None) -> tuple[IO[str], Path | None]:
    if log_path is None:
        return tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace"), None
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.unlink(missing_ok=True)  # a log of an earlier run must not pass for this one's
    _remove_dead_partials(log_path)
    fd, name = tempfile.mkstemp(
        dir=log_path.parent, prefix=f".{log_path.name}.{os.getpid()}.", suffix=PARTIAL_SUFFIX
    )
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # mkstemp makes it private; a log is as readable as the artifacts
    with contextlib.suppress(ImportError, OSError):  # O_APPEND: Python's and C's writes never overlap
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
    return os.fdopen(fd, "w", encoding="utf-8", errors="replace", buffering=1), Path(name)


def _remove_dead_partials(log_path: Path) -> None:
    from optcli.runlock import pid_alive

    for leftover in log_path.parent.glob(f".{log_path.name}.*{PARTIAL_SUFFIX}"):
        pid = leftover.name[len(log_path.name) + 2 :].split(".", 1)[0]
        if not pid.isdigit() or not pid_alive(int(pid)):
            leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def _fd_redirect(stream: IO[str]) -> Iterator[None]:
    """Point descriptors 1 and 2 at the log, for output from C/C++ code and child processes."""
    from optcli import interrupts

    _flush_all()
    saved: dict[int, int] = {}
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):  # a closed descriptor has nothing to redirect
                saved[fd] = os.dup(fd)
                os.dup2(stream.fileno(), fd)
        yield
    finally:
        with interrupts.deferred():  # a signal now must not leave the terminal pointing at the log
            _flush_all()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def _flush_all() -> None:
    for python_stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            python_stream.flush()
    with contextlib.suppress(Exception):  # C stdio buffers (torch's C++ printf), else they leak later
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def _python_redirect(
    stream: IO[str], captured: Captured, loggers: Sequence[str], level: int
) -> Iterator[None]:
    """sys.stdout/sys.stderr, warnings and the named loggers write to the log; all restored after."""
    from optcli import interrupts

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None):
        captured.warnings.append(warnings.WarningMessage(message, category, filename, lineno, None, line))
        stream.write(warnings.formatwarning(message, category, filename, lineno, line))

    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    named = _with_own_handlers(loggers)
    saved_loggers = [(lg.level, lg.propagate, list(lg.handlers)) for lg in named]
    saved_streams = sys.stdout, sys.stderr
    warning_state = warnings.catch_warnings()
    warning_state.__enter__()
    try:
        sys.stdout = sys.stderr = stream
        warnings.simplefilter("default")
        warnings.showwarning = show
        for lg in named:  # to the log only, not to their usual handlers (torch's write to the terminal)
            if lg.name in loggers:
                lg.setLevel(level)  # the children inherit it
            lg.propagate = False
            lg.handlers = [handler]
        yield
    finally:
        with interrupts.deferred():
            sys.stdout, sys.stderr = saved_streams
            warning_state.__exit__(None, None, None)
            for lg, (old_level, propagate, handlers) in zip(named, saved_loggers):
                lg.setLevel(old_level)
                lg.propagate = propagate
                lg.handlers = handlers


def _with_own_handlers(names: Sequence[str]) -> list[logging.Logger]:
    """The named loggers, and their descendants that do not propagate to them (torch gives each of
    its loggers a handler of its own)."""
    found = [logging.getLogger(name) for name in names]
    for key, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            isinstance(logger, logging.Logger)
            and logger.handlers
            and key.startswith(tuple(f"{n}." for n in names))
        ):
            found.append(logger)
    return found
