"""The run folder: artifact paths, staged (temp) writes that become visible only when complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optcli.errors import UserInputError


class Workspace:
    """Everything a run writes lives under `root`; files appear there whole or not at all."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def prepare(self) -> Workspace:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".write-test-"):
                pass
        except OSError as exc:
            raise UserInputError(
                f"output folder '{self.root}' cannot be written: {exc.strerror or exc}",
                hint="pass a writable folder with --out",
            ) from exc
        self.cleanup_staging()
        return self

    def path(self, name: str) -> Path:
        return self.root / name

    @contextmanager
    def staged(self, name: str) -> Iterator[Path]:
        """Yield a temp path to write `name` to; on success move it (and its .data file) into place."""
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            tmp = staging / name
            yield tmp
            data = staging / (name + ".data")
            if data.exists():
                os.replace(data, self.root / data.name)
            os.replace(tmp, self.root / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def write_text(self, name: str, text: str) -> Path:
        with self.staged(name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return self.root / name

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, default=str) + "\n")

    def cleanup_staging(self) -> None:
        """Remove temp folders an interrupted run left behind."""
        for leftover in self.root.glob(".staging-*"):
            shutil.rmtree(leftover, ignore_errors=True)
