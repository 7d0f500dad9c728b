"""Calibration and validation data sources, looked up by the `type` recipes use."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Union

from pydantic import Field

from optcli.calibration import files, images, python_callable, synthetic
from optcli.calibration.base import (
    Batch,
    DataSourceKind,
    SourceContext,
    checked_batches,
    read_source,
    rebatch,
    require_samples,
    sample_digests,
)

SOURCES: dict[str, DataSourceKind] = {
    module.SOURCE.name: module.SOURCE for module in (files, images, python_callable, synthetic)
}

DataSource = Annotated[
    Union[tuple(s.options for s in SOURCES.values())],  # noqa: UP007 - built from the registry
    Field(discriminator="type"),
]


def stream(options, ctx: SourceContext, *, batch_size: int, samples: int | None) -> Iterator[Batch]:
    """Checked batches of `batch_size` from the source, `samples` in total (None: all it has).

    Every consumer reads data through here, so every data problem (an unreadable file, user code
    that raises, no samples, all-NaN inputs) is one UserInputError naming `ctx.field`."""
    kind = SOURCES[options.type]
    raw = read_source(kind, options, ctx)
    return require_samples(rebatch(checked_batches(raw, ctx), batch_size, samples), ctx, options)


def is_synthetic(options) -> bool:
    return SOURCES[options.type].synthetic


def source_files(options, ctx: SourceContext) -> list[Path]:
    """The files a source reads that optcli can name (data files, images, a 'file.py:fn' callable's
    file), so caches keyed on the data notice when one changes."""
    files = SOURCES[options.type].files
    return files(options, ctx) if files is not None else []


__all__ = [
    "SOURCES",
    "Batch",
    "DataSource",
    "SourceContext",
    "is_synthetic",
    "sample_digests",
    "source_files",
    "stream",
]
