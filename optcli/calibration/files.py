"""Arrays from .npy / .npz files (a path or a glob), read one file at a time."""

from __future__ import annotations

import glob
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from optcli.calibration.base import Batch, DataSourceKind, SourceContext
from optcli.errors import UserInputError
from optcli.strict import StrictModel

# What numpy raises for a truncated, empty or corrupt .npy/.npz (an empty file is EOFError, a cut
# zip BadZipFile, a damaged member zlib.error or a CRC BadZipFile, a short .npy ValueError).
READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
_SIGNATURES = (b"\x93NUMPY", b"PK\x03\x04", b"PK\x05\x06")  # .npy, a zip (.npz), an empty zip


def _unreadable(path: Path) -> str | None:
    """Why `path` is not .npy/.npz data at all, before numpy reads it: numpy would take anything else
    for a pickle and suggest allow_pickle, which would run code from a data file."""
    with open(path, "rb") as handle:
        head = handle.read(6)
    if not head:
        return "the file is empty"
    if not head.startswith(_SIGNATURES):
        return f"it is not a .npy or .npz file (it starts with {head!r}, neither NumPy's nor a zip signature)"
    return None


class FilesSource(StrictModel):
    type: Literal["files"] = "files"
    path: str = Field(
        description="A .npz file (keys = input names, plus the labels key), a .npy file (single-input "
        "models), or a glob of either ('data/calib_*.npz'). Relative to the recipe file."
    )
    keys: dict[str, str] = Field(
        default_factory=dict,
        description="Map input name -> key in the .npz when they differ (e.g. {x: images}).",
    )


def resolve_paths(options: FilesSource, ctx: SourceContext) -> list[Path]:
    pattern = options.path if Path(options.path).is_absolute() else str(ctx.base_dir / options.path)
    paths = sorted(Path(p) for p in glob.glob(pattern)) if glob.has_magic(pattern) else [Path(pattern)]
    if not paths or not paths[0].exists():
        raise UserInputError(f"{ctx.field}.path: no file matches '{options.path}' (looked for {pattern})")
    for path in paths:
        if path.suffix not in (".npy", ".npz"):
            raise UserInputError(f"{ctx.field}.path: '{path}' is not a .npy or .npz file")
    return paths


def open_source(options: FilesSource, ctx: SourceContext) -> Iterator[Batch]:
    names = [spec.name for spec in ctx.resolver.inputs]
    for path in resolve_paths(options, ctx):
        try:
            why = _unreadable(path)
            if why:
                raise UserInputError(f"{ctx.field}.path: cannot read '{path}': {why}")
            if path.suffix == ".npy":
                if len(names) != 1:
                    raise UserInputError(
                        f"{ctx.field}.path: '{path}' is a .npy (one array) but the model has inputs "
                        f"{names}; use .npz files with one key per input"
                    )
                # mmap: a large .npy is paged in batch by batch, never loaded whole.
                yield {names[0]: np.load(path, mmap_mode="r", allow_pickle=False)}
                continue
            with np.load(path, allow_pickle=False) as archive:
                batch: Batch = {}
                for name in names:
                    key = options.keys.get(name, name)
                    if key not in archive:
                        raise UserInputError(
                            f"{ctx.field}: '{path}' has keys {sorted(archive.files)}, no '{key}' "
                            f"for input '{name}' (map it with {ctx.field}.keys)"
                        )
                    batch[name] = archive[key]
                if ctx.labels_key and ctx.labels_key in archive:
                    batch[ctx.labels_key] = archive[ctx.labels_key]
            yield batch
        except READ_ERRORS as exc:
            why = str(exc).strip() or type(exc).__name__
            if isinstance(exc, EOFError):
                why = "the file is empty (or ends before its header)"
            elif "mmap length" in why:
                why = f"the file is shorter than its header says (truncated: {why})"
            elif isinstance(exc, zipfile.BadZipFile | zlib.error):
                why = f"not a complete .npz archive (truncated or corrupt: {why})"
            raise UserInputError(f"{ctx.field}.path: cannot read '{path}': {why}") from exc


SOURCE = DataSourceKind(
    name="files", options=FilesSource, open=open_source, user_errors=READ_ERRORS, files=resolve_paths
)
