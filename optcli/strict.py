"""The base for every recipe section (unknown keys are errors, so typos are caught) and for whole recipes."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, PrivateAttr
from typing_extensions import Self


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class LocatedModel(StrictModel):
    """A recipe that knows the file it came from: relative paths in it start at that file's folder."""

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source_file: Path | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths in the recipe start from (the recipe file's folder)."""
        return self._base_dir

    @property
    def source_file(self) -> Path | None:
        return self._source_file

    def bind_location(self, source_file: Path | None) -> Self:
        self._source_file = source_file
        self._base_dir = source_file.parent.resolve() if source_file else Path.cwd()
        return self
