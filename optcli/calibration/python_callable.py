"""Batches from a user function: 'pkg.module:fn' or 'path/to/file.py:fn', returning an iterable of dicts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from optcli.calibration.base import Batch, DataSourceKind, SourceContext
from optcli.errors import OptcliError, UserInputError
from optcli.strict import StrictModel
from optcli.userimport import describe_exception, resolve_callable


class CallableSource(StrictModel):
    type: Literal["callable"] = "callable"
    callable: str = Field(
        description="'pkg.module:function' or 'path/to/file.py:function' returning an iterable of "
        "batches, each a dict input name -> array (plus the labels key for validation)."
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the function.")


def open_source(options: CallableSource, ctx: SourceContext) -> Iterator[Batch]:
    field = f"{ctx.field}.callable"
    fn = resolve_callable(options.callable, base_dir=ctx.base_dir, field=field)
    try:
        batches = fn(**options.kwargs)
    except OptcliError:
        raise
    except Exception as exc:  # the user's code: whatever it raises is theirs to fix
        raise UserInputError(
            f"{field}: calling '{options.callable}' raised {describe_exception(exc, ctx.base_dir)}"
        ) from exc
    try:
        iterator = iter(batches)
    except TypeError as exc:
        raise UserInputError(
            f"{field}: '{options.callable}' returned a {type(batches).__name__}, expected an iterable "
            "of batches (dicts input name -> array), e.g. a list or a generator"
        ) from exc
    # Errors while iterating (the user's generator body) are wrapped by read_source via user_errors.
    yield from iterator


def code_file(options: CallableSource, ctx: SourceContext) -> list[Path]:
    """A 'file.py:fn' callable's file (a module path is not followed: its package's version stands for it)."""
    module_part = options.callable.rpartition(":")[0]
    if not module_part.endswith(".py"):
        return []
    path = Path(module_part)
    path = path if path.is_absolute() else ctx.base_dir / path
    return [path] if path.is_file() else []


SOURCE = DataSourceKind(
    name="callable", options=CallableSource, open=open_source, user_errors=(Exception,), files=code_file
)
