"""Content-addressed store of stage results: reruns recompute only what changed.

An entry is a folder `<root>/<stage>/<key>/` holding the stage's files and `entry.json` (the key's
parts, each file's sha256 and the stage's metadata). Entries are written in a temp folder and
renamed into place, so a reader sees a whole entry or none; every read re-hashes the files, and a
missing or changed file drops the entry (the stage recomputes, never crashes). Failures are never
stored: a stage stores its result only after it returned.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENTRY_FILE = "entry.json"
KEY_LENGTH = 32


def default_root() -> Path:
    """`OPTCLI_CACHE_DIR`, else `$XDG_CACHE_HOME/optcli`, else `~/.cache/optcli`."""
    if os.environ.get("OPTCLI_CACHE_DIR"):
        return Path(os.environ["OPTCLI_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "optcli"


def make_key(stage: str, parts: dict[str, Any]) -> str:
    """sha256 over the stage kind and its canonical JSON parts (config, input digests, data, versions)."""
    text = json.dumps({"stage": stage, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Entry:
    stage: str
    key: str
    folder: Path
    files: dict[str, str]  # name -> sha256
    meta: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0

    def path(self, name: str) -> Path:
        return self.folder / name

    def size(self) -> int:
        return sum((self.folder / name).stat().st_size for name in self.files)


class StageCache:
    """Get and put stage results by key; `enabled=False` (--no-cache) makes every lookup a miss."""

    def __init__(self, root: Path | None = None, *, enabled: bool = True) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.enabled = enabled

    def get(self, stage: str, key: str) -> Entry | None:
        if not self.enabled:
            return None
        folder = self.root / stage / key
        try:
            record = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
            entry = Entry(stage, key, folder, record["files"], record.get("meta", {}), record["created"])
            intact = all(sha256_file(folder / name) == digest for name, digest in entry.files.items())
        except (OSError, ValueError, KeyError, TypeError):
            intact, entry = False, None
        if not intact:
            shutil.rmtree(folder, ignore_errors=True)  # a damaged entry is recomputed, not trusted
            return None
        return entry

    def put(self, stage: str, key: str, files: dict[str, Path], meta: dict[str, Any]) -> Entry | None:
        """Copy `files` (name -> path) into a new entry; returns None when the cache is off or unwritable."""
        if not self.enabled:
            return None
        final = self.root / stage / key
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=final.parent))
        except OSError:
            return None  # a read-only or full cache only costs speed
        try:
            digests = {}
            for name, src in files.items():
                # A copy, not a hard link: a later edit of the run folder's file must not reach the cache.
                shutil.copyfile(src, tmp / name)
                digests[name] = sha256_file(tmp / name)
            created = time.time()
            record = {"stage": stage, "key": key, "created": created, "files": digests, "meta": meta}
            (tmp / ENTRY_FILE).write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        return Entry(stage, key, final, digests, meta, created)

    def entries(self) -> Iterator[Entry]:
        if not self.root.is_dir():
            return
        for record_path in sorted(self.root.glob(f"*/*/{ENTRY_FILE}")):
            try:
                record = json.loads(record_path.read_text(encoding="utf-8"))
                yield Entry(
                    record["stage"],
                    record["key"],
                    record_path.parent,
                    record["files"],
                    record.get("meta", {}),
                    record["created"],
                )
            except (OSError, ValueError, KeyError):
                continue

    def prune(self, older_than_s: float) -> tuple[int, int]:
        """Remove entries created more than `older_than_s` seconds ago (and stale temp folders);
        returns (entries removed, bytes freed)."""
        cutoff = time.time() - older_than_s
        removed, freed = 0, 0
        for entry in [e for e in self.entries() if e.created < cutoff]:
            with contextlib.suppress(OSError):
                freed += entry.size()
            shutil.rmtree(entry.folder, ignore_errors=True)
            removed += 1
        for tmp in self.root.glob("*/.tmp-*"):
            if tmp.stat().st_mtime < cutoff:
                shutil.rmtree(tmp, ignore_errors=True)
        return removed, freed
