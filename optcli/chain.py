"""Exception chains: the interrupt a library wrapped, the root cause, and the user's own frame.

Libraries (torch above all) catch errors with broad handlers and re-raise their own types, so the
exception optcli sees is often a wrapper; what happened is further down `__cause__`/`__context__`.
"""

from __future__ import annotations

import linecache
import os
import re
import sys
import sysconfig
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_FILE_LINE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def walk(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then everything reachable through __cause__ and __context__ (each once, outermost first)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]


def find_interrupt(exc: BaseException) -> BaseException | None:
    """The first exception in the chain that is not an `Exception` (KeyboardInterrupt, SystemExit, ...)."""
    return next((e for e in walk(exc) if not isinstance(e, Exception)), None)


def reraise_interrupt(exc: BaseException) -> None:
    """Call first thing in a broad `except Exception`: if the error is a wrapped interrupt, or a signal
    arrived while the failing code ran, raise that interrupt (the original object, so its class and
    signal survive) instead of reporting the wrapper as a user error."""
    from optcli import interrupts

    found = find_interrupt(exc)
    if found is not None:
        # `from`: keep its own cause and suppress the context Python would set to the wrapper, which
        # would close a loop (wrapper -> ... -> interrupt -> wrapper) that traceback printers follow.
        raise found from found.__cause__
    signum = interrupts.received()
    if signum is not None:
        raise interrupts.Interrupted(signum) from exc


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception along __cause__ (or __context__ when there is no cause)."""
    current, seen = exc, {id(exc)}
    while True:
        nxt = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if nxt is None or id(nxt) in seen:
            return current
        seen.add(id(nxt))
        current = nxt


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def first_sentence(text: str, limit: int = 200) -> str:
    """The first line of a message without terminal colors, cut at its first sentence and `limit`."""
    lines = [line.strip() for line in strip_ansi(text).splitlines() if line.strip()]
    line = lines[0] if lines else ""
    match = re.match(r"(.+?[.!?])(\s|$)", line)
    line = match.group(1) if match and len(match.group(1)) >= 20 else line
    return line if len(line) <= limit else line[: limit - 3].rsplit(" ", 1)[0] + "..."


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    code: str

    def where(self) -> str:
        path = Path(self.file)
        try:
            shown = str(path.resolve().relative_to(Path.cwd().resolve()))
        except ValueError:
            shown = str(path)
        return f"{shown}:{self.line}"


def user_frame(exc: BaseException, prefer: Iterable[str] = ()) -> Frame | None:
    """Where in the user's code the failure happened: the innermost frame (of the innermost exception
    first) in a file of `prefer`, else the innermost one outside Python, site-packages and optcli.
    Frames come from tracebacks and from 'File "...", line N' in messages (torch quotes the user's
    frame there when the traceback does not hold it)."""
    candidates = list(_candidates(exc))
    preferred = {os.path.realpath(p) for p in prefer}
    for frame in candidates:
        if os.path.realpath(frame.file) in preferred:
            return frame
    return next((frame for frame in candidates if not is_library(frame.file)), None)


def _candidates(exc: BaseException) -> Iterator[Frame]:
    for current in reversed(list(walk(exc))):
        for summary in reversed(traceback.extract_tb(current.__traceback__)):
            yield Frame(summary.filename, summary.lineno or 0, (summary.line or "").strip())
        for match in reversed(list(_FILE_LINE.finditer(strip_ansi(str(current))))):
            file, line = match.group("file"), int(match.group("line"))
            yield Frame(file, line, linecache.getline(file, line).strip())


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {sys.base_prefix, sys.prefix, str(Path(__file__).resolve().parent)}
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


def is_library(file: str) -> bool:
    """Python's own files, installed packages, optcli, and pseudo-files such as '<string>'."""
    if file.startswith("<") or not os.path.isfile(file):
        return True
    return os.path.realpath(file).startswith(_library_roots())
