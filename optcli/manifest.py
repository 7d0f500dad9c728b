"""`<run>/manifest.json`: every artifact of the run with its digest, producer and cache key.

Tools that need a run's models (the CPU benchmark suite, a later `optcli compare`) read this file
instead of reconstructing the pipeline's internals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from optcli.artifacts import Artifact
from optcli.errors import UserInputError

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


def manifest_data(artifacts: dict[str, Artifact], stages: list[dict[str, Any]], root: Path) -> dict[str, Any]:
    entries = {}
    for name, artifact in artifacts.items():
        entry = artifact.to_dict()
        entry["path"] = (
            str(Path(entry["path"]).relative_to(root))
            if artifact.path.is_relative_to(root)
            else entry["path"]
        )
        entries[name] = entry
    return {"manifest_version": MANIFEST_VERSION, "artifacts": entries, "stages": stages}


def read_manifest(run_dir: Path) -> dict[str, Artifact]:
    """The run's artifacts, re-hashed: a file changed since the run is an error, not a silent mismatch."""
    path = Path(run_dir) / MANIFEST_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserInputError(f"{path}: cannot read the run manifest: {exc}") from exc
    artifacts = {}
    for name, entry in data.get("artifacts", {}).items():
        file = Path(entry["path"])
        artifact = Artifact(
            name=name,
            path=file if file.is_absolute() else Path(run_dir) / file,
            kind=entry["kind"],
            precision=entry["precision"],
            producer=entry["producer"],
            cache_key=entry.get("cache_key"),
        )
        if artifact.sha256 != entry["sha256"]:
            raise UserInputError(
                f"{path}: artifact '{name}' ({artifact.path}) changed since the run wrote it"
            )
        artifacts[name] = artifact
    return artifacts
