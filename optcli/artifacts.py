"""Artifacts: the files one stage hands the next, with a digest over every file they consist of."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optcli.cache import sha256_file


def onnx_files(path: Path) -> list[Path]:
    """The ONNX file and every external-data file its tensors point to (sorted, deduplicated)."""
    from google.protobuf.message import DecodeError

    from optcli.onnx_io import external_data_locations

    try:
        locations = external_data_locations(path)
    except DecodeError:  # not (or no longer) a valid model: its bytes alone are what a digest can cover
        return [path]
    return [path, *sorted({path.parent / location for location in locations})]


def files_digest(paths: list[Path]) -> str:
    """sha256 over the files' names (relative to the first one's folder) and contents."""
    digest = hashlib.sha256()
    base = paths[0].parent
    for path in paths:
        digest.update(str(path.relative_to(base)).encode() + b"\0")
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


@dataclass
class Artifact:
    """One model file a stage produced (with its external data), and how it came to be."""

    name: str  # the recipe's artifact name: exported, optimized, quantized, quantized_nncf
    path: Path
    kind: str  # onnx
    precision: str  # what the artifact computes in: fp32, fp16, int8, fp8 (int8/fp8 from its Q/DQ ops)
    producer: str  # the stage that wrote it
    cache_key: str | None = None
    precision_detail: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""  # computed over files() when not given
    file_names: list[str] = field(default_factory=list)  # files(), known once (parsing a model costs)

    def __post_init__(self) -> None:
        if not self.sha256:
            self.sha256 = files_digest(self.files())

    def files(self) -> list[Path]:
        if not self.file_names:
            paths = onnx_files(self.path) if self.kind == "onnx" else [self.path]
            self.file_names = [str(p.relative_to(self.path.parent)) for p in paths]
        return [self.path.parent / name for name in self.file_names]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "files": [str(p.relative_to(self.path.parent)) for p in self.files()],
            "kind": self.kind,
            "precision": self.precision,
            "producer": self.producer,
            "sha256": self.sha256,
            "cache_key": self.cache_key,
            **({"precision_detail": self.precision_detail} if self.precision_detail else {}),
        }
