"""Calibration and validation data sources, looked up by the `type` recipes use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Union

from pydantic import Field

from optcli.calibration import files, images, python_callable, synthetic
from optcli.calibration.base import (
    Batch,
    DataSourceKind,
    SourceContext,
    checked_batches,
    rebatch,
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
    """Checked batches of `batch_size` from the source, `samples` in total (None: all it has)."""
    kind = SOURCES[options.type]
    return rebatch(checked_batches(kind.open(options, ctx), ctx), batch_size, samples)


def is_synthetic(options) -> bool:
    return SOURCES[options.type].synthetic


__all__ = [
    "SOURCES",
    "Batch",
    "DataSource",
    "SourceContext",
    "is_synthetic",
    "sample_digests",
    "stream",
]
