"""Min/opt/max shapes of each input from the recipe's named dims: what TensorRT profiles are built for."""

from __future__ import annotations

from typing import NamedTuple

from optcli.errors import UserInputError
from optcli.specs import DimRange, InputSpec


class ShapeRange(NamedTuple):
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def shape_range(spec: InputSpec, dims: dict[str, DimRange]) -> ShapeRange:
    """Static dims stay as declared; a named dim takes its DimRange's min, opt (default: min) and max."""
    missing = [d for d in spec.dynamic_dims if d not in dims]
    if missing:
        raise UserInputError(f"input '{spec.name}' uses dim(s) {missing} that have no range in model.dims")

    def pick(which: str) -> tuple[int, ...]:
        return tuple(
            d if isinstance(d, int) else (dims[d].typical if which == "opt" else getattr(dims[d], which))
            for d in spec.shape
        )

    return ShapeRange(pick("min"), pick("opt"), pick("max"))


def varying_axes(spec: InputSpec, dims: dict[str, DimRange]) -> dict[int, str]:
    """Axes whose size really varies (min < max), by dim name: the same name on two inputs is one dim."""
    return {axis: d for axis, d in enumerate(spec.shape) if isinstance(d, str) and dims[d].min != dims[d].max}
