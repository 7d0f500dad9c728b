"""Cells: every (model, variant) of a sweep file, with its `--set` list, resources, run folder and key."""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optcli.errors import OptcliError, RecipeError
from optcli.sweep.spec import Resources, SweepFile, Variant


@dataclass
class Cell:
    model: str
    variant: str
    recipe: Path
    overrides: list[str]
    resources: Resources
    out_dir: Path
    key: str | None = None  # None: the recipe did not load (the cell is a bad-input result)
    problem: OptcliError | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.model}/{self.variant}"

    def argv(self) -> list[str]:
        """The cell's `optcli run` without --out (the executor names the folder), through the launcher
        that ties the run to the process that starts it."""
        sets = [arg for override in self.overrides for arg in ("--set", override)]
        return [sys.executable, "-m", "optcli.sweep.launch", "run", str(self.recipe), *sets, "-q"]


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(name: str) -> str:
    """A folder name: matrix values such as 'a/b' or '{x: 1}' must not create subfolders."""
    return _UNSAFE.sub("_", name).strip("_") or "_"


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def variants(sweep: SweepFile) -> list[Variant]:
    """Named variants crossed with every combination of the matrix values."""
    named = sweep.variants or [Variant(name="")]
    combos: list[tuple[str, list[str]]] = [("", [])]
    if sweep.matrix:
        keys = list(sweep.matrix)
        combos = []
        for values in itertools.product(*(sweep.matrix[k] for k in keys)):
            label = "-".join(_safe(_value_text(v)) if v is not None else "none" for v in values)
            sets = [f"{k}={_value_text(v)}" for k, v in zip(keys, values) if v is not None]
            combos.append((label, sets))
    out = []
    for base, (label, sets) in itertools.product(named, combos):
        name = "-".join(part for part in (_safe(base.name) if base.name else "", label) if part)
        out.append(Variant(name=name or "default", set=[*base.set, *sets], resources=base.resources))
    return out


def expand(
    sweep: SweepFile,
    base_dir: Path,
    out_dir: Path,
    only: list[str] | None = None,
    *,
    file: str = "sweep file",
) -> list[Cell]:
    """The sweep's cells in file order, less `exclude` and, with `only`, the ones no pattern matches."""
    cells: list[Cell] = []
    for index, entry in enumerate(sweep.models):
        recipe = (base_dir / entry.recipe).resolve()
        model = _safe(entry.name or recipe.stem)
        for variant in variants(sweep):
            resources = sweep.resources.merged(entry.resources).merged(variant.resources)
            overrides = [*sweep.set, *entry.set, *variant.set]
            cell = Cell(model, variant.name, recipe, overrides, resources, out_dir / model / variant.name)
            cell.extra["models_index"] = index
            cells.append(cell)
    seen: dict[str, int] = {}
    for cell in cells:
        if cell.id in seen:
            raise RecipeError(
                f"two cells are named '{cell.id}'; give the models distinct `name`s",
                file=file,
                field=f"models.{cell.extra['models_index']}.name",
            )
        seen[cell.id] = 1
    cells = [c for c in cells if not any(fnmatch.fnmatchcase(c.id, p) for p in sweep.exclude)]
    if only:
        cells = [c for c in cells if any(fnmatch.fnmatchcase(c.id, p) for p in only)]
    return cells


def assign_keys(cells: list[Cell]) -> None:
    """A digest of what decides each cell's run: the resolved recipe (after --set), the model's code and
    checkpoint, the data files' fingerprints, optcli's source and package versions, and the resources
    (they decide the hardware). A recipe that does not load keeps its error as the cell's result."""
    from optcli.pipeline import cache_versions
    from optcli.recipe import load_recipe
    from optcli.specs import ShapeResolver
    from optcli.stages.data import open_data
    from optcli.stages.keys import model_fingerprint

    versions = cache_versions()
    for cell in cells:
        try:
            recipe = load_recipe(cell.recipe, cell.overrides)
            section = recipe.model
            resolver = ShapeResolver(section.inputs, section.dims, section.batch_dim)
            data = open_data(recipe, resolver, lambda _message: None)
            parts = {
                "recipe": recipe.model_dump(mode="json", by_alias=True),
                "model": model_fingerprint(section, recipe.base_dir),
                "calibration": data.calibration.fingerprint() if data.calibration else None,
                "validation": data.validation.fingerprint(),
                "versions": versions,
                "resources": cell.resources.model_dump(mode="json"),
            }
        except OptcliError as exc:
            cell.problem = exc
            continue
        except OSError as exc:  # a data file that vanished: the run itself will say which
            parts = {"unreadable": str(exc), "overrides": cell.overrides, "recipe": str(cell.recipe)}
        text = json.dumps(parts, sort_keys=True, default=str)
        cell.key = hashlib.sha256(text.encode()).hexdigest()[:32]
