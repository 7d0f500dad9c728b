"""Moving ONNX artifacts between the run folder and the stage cache (with their external data)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from optcli.artifacts import Artifact
from optcli.cache import Entry
from optcli.stages.context import StageContext


def store(ctx: StageContext, stage: str, key: str, artifact: Artifact, meta: dict[str, Any], **extra: Path):
    """Put a finished stage's artifact (all its files, as it already listed them) and extra files
    into the cache; `meta` gets the artifact's record."""
    files = {p.name: p for p in artifact.files()}
    files.update(extra)
    ctx.cache.put(stage, key, files, {**meta, "artifact": artifact.to_dict()})


def restore(ctx: StageContext, entry: Entry, name: str) -> Path:
    """Put the cached file `name` (and the external-data files beside it) into the run folder, each
    appearing whole or not at all. A hard link where the file system allows: the run folder's files
    are only ever replaced (rename), and an in-place edit would fail the entry's digest check on the
    next read, which recomputes the stage. ResNet-50's 100 MB export: no copy to write."""
    for file in sorted(entry.files, key=lambda f: f == name):  # data files first, the model last
        if file == name or file.startswith(name + "."):
            with ctx.workspace.staged(file) as tmp:
                try:
                    os.link(entry.path(file), tmp)
                except OSError:  # another file system, or links not allowed
                    shutil.copyfile(entry.path(file), tmp)
    return ctx.workspace.path(name)


def cached_artifact(entry: Entry, path: Path, producer: str) -> Artifact:
    meta = entry.meta["artifact"]
    return Artifact(
        name=meta["name"],
        path=path,
        kind=meta["kind"],
        precision=meta["precision"],
        producer=producer,
        cache_key=entry.key,
        precision_detail=meta.get("precision_detail", {}),
        sha256=meta["sha256"],  # the entry's files were just verified: no second pass over them
        file_names=meta["files"],
    )
