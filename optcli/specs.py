"""Input specs: names, dtypes and shapes with named dynamic dims, resolved to concrete shapes."""

from __future__ import annotations

import re
from typing import Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from optcli.strict import StrictModel

DType = Literal["float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool"]
_DIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

NUMPY_DTYPES: dict[str, np.dtype] = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "int64": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
}


class InputSpec(StrictModel):
    """One model input, in the order the model's forward() takes it."""

    name: str = Field(
        description="Input name; becomes the ONNX graph input name and the key in data batches."
    )
    shape: list[int | str] = Field(
        description="Dimensions: an integer is static, a name (e.g. 'batch', 'seq') is dynamic "
        "and its range comes from model.dims. The same name in two inputs is the same dimension."
    )
    dtype: DType = Field("float32", description="Element type of the input.")

    @field_validator("shape")
    @classmethod
    def _check_dims(cls, shape: list[int | str]) -> list[int | str]:
        if not shape:
            raise ValueError("shape must have at least one dimension")
        for dim in shape:
            if isinstance(dim, int) and dim < 1:
                raise ValueError(f"static dimension {dim} must be >= 1")
            if isinstance(dim, str) and not _DIM_NAME.match(dim):
                raise ValueError(f"dynamic dimension name {dim!r} must be an identifier")
        return shape

    @property
    def dynamic_dims(self) -> list[str]:
        return [d for d in self.shape if isinstance(d, str)]


class DimRange(StrictModel):
    """Range of a named dynamic dimension. One definition drives export, data checks and engines."""

    min: int = Field(1, ge=1, description="Smallest size the artifact must accept.")
    opt: int | None = Field(None, ge=1, description="Most common size (engines tune for it). Default: min.")
    max: int = Field(64, ge=1, description="Largest size the artifact must accept.")

    @model_validator(mode="after")
    def _ordered(self) -> DimRange:
        opt = self.opt if self.opt is not None else self.min
        if not self.min <= opt <= self.max:
            raise ValueError(f"need min <= opt <= max, got {self.min}, {opt}, {self.max}")
        return self

    @property
    def typical(self) -> int:
        return self.opt if self.opt is not None else self.min


def parse_input_flag(text: str) -> InputSpec:
    """Parse the CLI shorthand 'name:d0,d1,...[:dtype]', e.g. 'x:batch,3,224,224'."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"expected 'name:dim,dim,...[:dtype]', got {text!r}")
    dims: list[int | str] = [int(d) if d.strip().isdigit() else d.strip() for d in parts[1].split(",")]
    spec = {"name": parts[0], "shape": dims}
    if len(parts) == 3:
        spec["dtype"] = parts[2]
    return InputSpec.model_validate(spec)


class ShapeResolver:
    """Turns named dims into concrete sizes for a given batch size (or other dim overrides)."""

    def __init__(self, inputs: list[InputSpec], dims: dict[str, DimRange], batch_dim: str) -> None:
        self.inputs = inputs
        self.dims = dims
        self.batch_dim = batch_dim

    def sizes(self, batch_size: int | None = None, **overrides: int) -> dict[str, int]:
        sizes = {name: rng.typical for name, rng in self.dims.items()}
        if batch_size is not None:
            sizes[self.batch_dim] = batch_size
        sizes.update(overrides)
        return sizes

    def shape(self, spec: InputSpec, sizes: dict[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else sizes[d] for d in spec.shape)

    def check_array(self, spec: InputSpec, array: np.ndarray, where: str) -> str | None:
        """Return why `array` cannot feed `spec`, or None if it fits the declared shape and dtype."""
        if array.ndim != len(spec.shape):
            return (
                f"{where}: input '{spec.name}' has {array.ndim} dimensions {tuple(array.shape)}, "
                f"the recipe declares {len(spec.shape)}: {spec.shape}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
            if isinstance(want, int) and want != got:
                return (
                    f"{where}: input '{spec.name}' axis {axis} is {got}, the recipe declares {want} "
                    f"(shape {spec.shape}, got {tuple(array.shape)})"
                )
            if isinstance(want, str) and want in self.dims:
                rng = self.dims[want]
                if want != self.batch_dim and not rng.min <= got <= rng.max:
                    return (
                        f"{where}: input '{spec.name}' axis {axis} ('{want}') is {got}, outside "
                        f"model.dims.{want} [{rng.min}, {rng.max}]"
                    )
        if spec.dtype == "bfloat16":
            return None
        want_dtype = NUMPY_DTYPES[spec.dtype]
        if array.dtype != want_dtype and not np.can_cast(array.dtype, want_dtype, casting="same_kind"):
            return (
                f"{where}: input '{spec.name}' has dtype {array.dtype}, the recipe declares "
                f"{spec.dtype} and {array.dtype} cannot be converted safely"
            )
        return None
