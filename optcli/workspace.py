"""The run folder: artifact paths, staged (temp) writes that become visible only when complete."""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optcli import interrupts
from optcli.errors import UserInputError
from optcli.runlock import RunLock, pid_alive

STAGING_PREFIX = ".staging-"
_STAGING_PID = re.compile(r"^\.staging-(\d+)-")


class Workspace:
    """Everything a run writes lives under `root`; files appear there whole or not at all."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def prepare(self) -> Workspace:
        """Create the folder and check it is writable; remove staging folders no live run owns."""
        self.ensure_writable()
        self.cleanup_staging()
        return self

    @contextmanager
    def locked(
        self, *, wait: bool = False, on_wait: Callable[[str], None] | None = None
    ) -> Iterator[RunLock]:
        """Hold the run folder's lock (exit 2 naming its holder, or wait) for the whole run."""
        self.ensure_writable()
        with RunLock(self.root).held(wait=wait, on_wait=on_wait) as lock:
            self.cleanup_staging()
            yield lock

    def ensure_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise UserInputError(
                f"output folder '{self.root}' cannot be written: {exc.strerror or exc}",
                hint="pass a writable folder with --out",
            ) from exc

    def path(self, name: str) -> Path:
        return self.root / name

    @contextmanager
    def staged(self, name: str) -> Iterator[Path]:
        """Yield a temp path to write `name` to; on success move it (and its .data file) into place."""
        # The pid in the name tells a later run whether the writer is still alive.
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.root))
        try:
            tmp = staging / name
            yield tmp
            with interrupts.deferred():  # the model and its .data file move together or not at all
                data = staging / (name + ".data")
                if data.exists():
                    os.replace(data, self.root / data.name)
                os.replace(tmp, self.root / name)
        finally:
            with interrupts.deferred():
                shutil.rmtree(staging, ignore_errors=True)

    def write_text(self, name: str, text: str) -> Path:
        with self.staged(name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return self.root / name

    def write_json(self, name: str, data: Any) -> Path:
        """Strict JSON (RFC 8259), which jq, JavaScript and Go parse: Python's json would write the
        bare tokens NaN/Infinity for non-finite metrics; they become the strings "NaN", "Infinity",
        "-Infinity". `allow_nan=False` makes any value the walk missed an error, not invalid JSON."""
        text = json.dumps(strict_json(data), indent=2, default=str, allow_nan=False)
        return self.write_text(name, text + "\n")

    def cleanup_staging(self) -> None:
        """Remove temp folders a killed run left behind, never those of a live process."""
        for leftover in self.root.glob(STAGING_PREFIX + "*"):
            if not staging_owner_alive(leftover.name):
                shutil.rmtree(leftover, ignore_errors=True)


NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def strict_json(value: Any) -> Any:
    """`value` with every non-finite float (numpy's too) as a string; numpy numbers as Python's."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        value = value.item()  # a numpy scalar or 0-d array
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else NON_FINITE[str(number)]
    return value


def staging_owner_alive(name: str) -> bool:
    """Whether another live process may still write into this staging folder (names without a pid
    come from older versions: nobody owns them)."""
    match = _STAGING_PID.match(name)
    if match is None:
        return False
    pid = int(match.group(1))
    return pid != os.getpid() and pid_alive(pid)
