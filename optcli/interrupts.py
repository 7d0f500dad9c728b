"""SIGINT and SIGTERM become an exception, so every `finally` (staging cleanup, report writing) runs.

The first signal raises `Interrupted` in the main thread. Further signals while that unwinds are
noted, not raised, so cleanup is not cut short; a third one exits at once (files are written to a
staging folder and renamed into place, so even then none is left half-written).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

TRAPPED = (signal.SIGINT, signal.SIGTERM)
FORCE_AFTER = 3  # signals; the last one exits without cleanup


class Interrupted(KeyboardInterrupt):
    """A signal asked optcli to stop; a KeyboardInterrupt so libraries treat it like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.signum)


_received: list[int] = []  # signals seen since trap() was entered, in order
_state = {"raised": False, "deferring": 0, "trapped": 0}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_code_for(signum: int | None) -> int:
    """The shell convention 128 + signal: 130 for SIGINT (Ctrl-C), 143 for SIGTERM."""
    return 128 + (signum or signal.SIGINT)


def received() -> int | None:
    """The first signal received while trapped, or None."""
    return _received[0] if _received else None


def check() -> None:
    """Raise if a signal arrived and the run went on anyway (library code swallowed the exception).

    Called between stages, in the normal flow only."""
    if _received:
        _state["raised"] = True
        raise Interrupted(_received[0])


@contextmanager
def deferred() -> Iterator[None]:
    """A signal inside the block is raised when the block ends, so a commit (two renames, a folder
    removal) is never cut in half. Blocks nest; during cleanup a signal is not raised at all."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
    if _received and not _state["raised"] and not _state["deferring"]:
        _state["raised"] = True
        raise Interrupted(_received[0])


def _handler(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    if not _state["raised"] and not _state["deferring"]:
        _state["raised"] = True
        raise Interrupted(signum)
    if len(_received) >= FORCE_AFTER:
        os.write(2, f"\n{signal_name(signum)} again: exiting without cleanup\n".encode())
        os._exit(exit_code_for(_received[0]))
    if _state["raised"]:  # os.write: print() could re-enter a stream in the middle of a write
        os.write(2, f"\n{signal_name(signum)}: still cleaning up (signal again to exit at once)\n".encode())


@contextmanager
def trap() -> Iterator[None]:
    """Install the handlers for the duration of a command (main thread only), then restore them.

    Nested use (the CLI, then the pipeline) keeps the outer installation."""
    import threading

    if threading.current_thread() is not threading.main_thread() or _state["trapped"]:
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in TRAPPED}
    _reset()
    _state["trapped"] = 1
    try:
        for signum in TRAPPED:
            if previous[signum] is not signal.SIG_IGN:  # as Python does: `cmd &` in a script ignores Ctrl-C
                signal.signal(signum, _handler)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _reset()


def _reset() -> None:
    _received.clear()
    _state.update(raised=False, deferring=0, trapped=0)
