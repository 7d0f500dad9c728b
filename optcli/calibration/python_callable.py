"""Batches from a user function: 'pkg.module:fn' or 'path/to/file.py:fn', returning an iterable of dicts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from optcli.calibration.base import Batch, DataSourceKind, SourceContext
from optcli.errors import UserInputError
from optcli.strict import StrictModel
from optcli.userimport import resolve_callable


class CallableSource(StrictModel):
    type: Literal["callable"] = "callable"
    callable: str = Field(
        description="'pkg.module:function' or 'path/to/file.py:function' returning an iterable of "
        "batches, each a dict input name -> array (plus the labels key for validation)."
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the function.")


def open_source(options: CallableSource, ctx: SourceContext) -> Iterator[Batch]:
    fn = resolve_callable(options.callable, base_dir=ctx.base_dir, field=f"{ctx.field}.callable")
    try:
        batches = fn(**options.kwargs)
        iterator = iter(batches)
    except TypeError as exc:
        raise UserInputError(f"{ctx.field}.callable: calling '{options.callable}' failed: {exc}") from exc
    yield from iterator


SOURCE = DataSourceKind(name="callable", options=CallableSource, open=open_source)
