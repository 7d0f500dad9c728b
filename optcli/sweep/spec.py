"""The sweep file: recipes (models) times variants (named `--set` lists and/or a matrix of field values),
with per-cell resources, a concurrency limit, retries and the output folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from optcli.errors import RecipeError
from optcli.recipe.yaml_source import load_yaml, locate
from optcli.strict import StrictModel


class Resources(StrictModel):
    """What one cell asks of a Ray node (the local executor runs `concurrency` cells at once and
    does not look at them)."""

    num_cpus: float | None = Field(None, ge=0)
    """CPUs a cell reserves (Ray's num_cpus; default 1)."""
    num_gpus: float | None = Field(None, ge=0)
    """GPUs a cell reserves (Ray's num_gpus)."""
    custom: dict[str, float] = Field(default_factory=dict)
    """Custom node resources, e.g. {"accelerator_type:H100": 0.001} pins the cell to H100 nodes."""

    def merged(self, other: Resources | None) -> Resources:
        if other is None:
            return self
        return Resources(
            num_cpus=other.num_cpus if other.num_cpus is not None else self.num_cpus,
            num_gpus=other.num_gpus if other.num_gpus is not None else self.num_gpus,
            custom={**self.custom, **other.custom},
        )


class ModelEntry(StrictModel):
    recipe: str
    """Recipe file, relative to the sweep file."""
    name: str | None = None
    """Row name in the matrix and run-folder name (default: the recipe file's stem)."""
    set: list[str] = Field(default_factory=list)
    """--set overrides for every cell of this model."""
    resources: Resources | None = None


class Variant(StrictModel):
    name: str
    set: list[str] = Field(default_factory=list)
    resources: Resources | None = None


class RaySettings(StrictModel):
    address: str | None = None
    """Cluster to join: 'auto', 'ray://head:10001', 'host:6379'; default: start a local Ray."""
    working_dir: str | None = None
    """Ship this folder (relative to the sweep file) to the workers (Ray runtime_env); only needed
    when the workers do not see the driver's files."""
    shared_output: bool = False
    """The output folder is the same path on every node: workers write run folders there directly.
    Otherwise each cell runs in a temp folder on its worker and its report files come back."""


class SweepFile(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    output: str | None = None
    """Sweep folder, relative to the sweep file (default: runs/sweep-<name> in the current folder)."""
    executor: Literal["local", "ray"] = "local"
    concurrency: int | None = Field(None, ge=1)
    """Cells at once (default: local, the CPU count; Ray, the cluster's CPUs)."""
    retries: int = Field(2, ge=0)
    """Extra attempts for a cell whose worker or node died (a failed gate is never retried)."""
    resources: Resources = Resources()
    set: list[str] = Field(default_factory=list)
    """--set overrides for every cell."""
    models: list[ModelEntry] = Field(min_length=1)
    variants: list[Variant] = Field(default_factory=list)
    matrix: dict[str, list[Any]] = Field(default_factory=dict)
    """Recipe field -> values; every combination is a variant (crossed with `variants` when both)."""
    exclude: list[str] = Field(default_factory=list)
    """Cells left out, as fnmatch patterns on '<model>/<variant>'."""
    ray: RaySettings = RaySettings()


def load_sweep(path: Path) -> tuple[SweepFile, Path]:
    """The validated sweep file and the folder its relative paths start from; exit 2 naming the field."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError("sweep file does not exist" if not path.exists() else "not a file", file=str(path))
    data, lines = load_yaml(path.read_text(encoding="utf-8"), str(path))
    try:
        sweep = SweepFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = tuple(str(p) for p in error["loc"])
        where, line = locate(str(path), lines, field)
        more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
        message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
        raise RecipeError(message + more, file=where, line=line, field=".".join(field)) from None
    return sweep, path.resolve().parent
