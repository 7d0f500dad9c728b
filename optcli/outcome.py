"""The one mapping from an exception to (kind, exit code, message): report.json's `error` record and
the process exit status both come from here, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optcli import interrupts
from optcli.errors import MissingDependencyError, OptcliError

INTERNAL_EXIT = 4


@dataclass(frozen=True)
class Outcome:
    kind: str  # user_input | environment | interrupted | internal
    exit_code: int
    message: str
    hint: str | None = None

    def record(self, stage: str | None) -> dict[str, Any]:
        """The `error` entry of report.json."""
        entry: dict[str, Any] = {
            "stage": stage,
            "kind": self.kind,
            "message": self.message,
            "exit_code": self.exit_code,
        }
        if self.hint:
            entry["hint"] = self.hint
        return entry


def classify(exc: BaseException) -> Outcome:
    signum = getattr(exc, "signum", None) or interrupts.received()
    # A signal arrived first: whatever a library turned it into (torch wraps KeyboardInterrupt in
    # its own errors), the run was interrupted, not given bad input.
    if isinstance(exc, KeyboardInterrupt) or signum is not None:
        name = interrupts.signal_name(signum) if signum else "KeyboardInterrupt (Ctrl-C)"
        return Outcome("interrupted", interrupts.exit_code_for(signum), f"interrupted by {name}")
    if isinstance(exc, OptcliError):
        kind = (
            "environment" if isinstance(exc, MissingDependencyError) or exc.exit_code == 3 else "user_input"
        )
        return Outcome(kind, exc.exit_code, exc.message, exc.hint)
    return Outcome(
        "internal",
        INTERNAL_EXIT,
        f"{type(exc).__name__}: {exc}",
        "rerun with --debug for the traceback; please report it",
    )
