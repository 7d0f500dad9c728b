"""Read a recipe: YAML -> overrides (--set) -> validated Recipe; errors name file:line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from optcli.errors import RecipeError
from optcli.recipe.models import Recipe
from optcli.recipe.problems import RecipeProblems, located_errors
from optcli.recipe.yaml_source import LineMap, load_value, load_yaml


def load_recipe(path: Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise RecipeError("recipe file does not exist" if not path.exists() else "not a file", file=str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read the recipe: {exc}", file=str(path)) from exc
    return parse_recipe(text, source=path, overrides=overrides)


def parse_recipe(text: str, *, source: Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """The validated recipe, or a RecipeError listing every problem (RecipeProblems when several)."""
    file = str(source) if source else "<recipe>"
    data, lines = load_yaml(text, file)
    _apply_overrides(data, lines, overrides or [])
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems = located_errors(exc, file, lines, data)
        raise (problems[0] if len(problems) == 1 else RecipeProblems(problems)) from None
    return recipe.bind_location(source)


def all_errors(
    text: str, *, source: Path | None = None, overrides: list[str] | None = None
) -> list[RecipeError]:
    """Every problem in a recipe (for `optcli recipe validate`), not only the first."""
    file = str(source) if source else "<recipe>"
    try:
        data, lines = load_yaml(text, file)
        _apply_overrides(data, lines, overrides or [])
        Recipe.model_validate(data)
    except RecipeError as exc:
        return [exc]
    except ValidationError as exc:
        return located_errors(exc, file, lines, data)
    return []


def _apply_overrides(data: dict[str, Any], lines: LineMap, overrides: list[str]) -> None:
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key.startswith("build.") and "build" not in data:
            # `--set build.0.threads=4` on a recipe relying on the default build list.
            from optcli.backends.onnxruntime import OnnxRuntimeConfig

            data["build"] = [
                OnnxRuntimeConfig().model_dump(exclude_defaults=True) | {"engine": "onnxruntime"}
            ]
        apply_override(data, override)
        # Errors under an overridden field point at --set, not at a recipe line.
        path = tuple(key.split("."))
        for known in [k for k in lines if k[: len(path)] == path]:
            del lines[known]
        lines[path] = None


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply '--set a.b.0.c=value' to the raw recipe dict; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set expects 'dotted.field=value', got {assignment!r}", file="--set")
    try:
        value = load_value(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise RecipeError(f"value {raw!r} is not valid YAML: {exc}", file="--set", field=key) from None
    parts = key.strip().split(".")
    target: Any = data
    for depth, part in enumerate(parts[:-1]):
        target = _step(target, part, parts[: depth + 1], next_is_index=parts[depth + 1].isdigit())
    last = parts[-1]
    if isinstance(target, list):
        index = _index(target, last, parts, allow_append=True)
        if index == len(target):
            target.append(value)
        else:
            target[index] = value
    elif isinstance(target, dict):
        target[last] = value
    else:
        raise RecipeError(f"'{'.'.join(parts[:-1])}' is not a section", file="--set", field=key.strip())


def _step(target: Any, part: str, path: list[str], *, next_is_index: bool) -> Any:
    if isinstance(target, list):
        index = _index(target, part, path, allow_append=False)
        if isinstance(target[index], str):  # e.g. passes: [fp16] -> {name: fp16}
            target[index] = {"name": target[index]}
        return target[index]
    if not isinstance(target, dict):
        raise RecipeError(f"'{'.'.join(path[:-1])}' is not a section", file="--set", field=".".join(path))
    if target.get(part) is None:
        target[part] = [] if next_is_index else {}
    return target[part]


def _index(target: list[Any], part: str, path: list[str], *, allow_append: bool) -> int:
    if not part.isdigit():
        raise RecipeError("is a list; use a numeric index", file="--set", field=".".join(path))
    index = int(part)
    limit = len(target) + (1 if allow_append else 0)
    if index >= limit:
        raise RecipeError(
            f"index {index} is out of range (the list has {len(target)} entries)",
            file="--set",
            field=".".join(path),
        )
    return index


def recipe_schema() -> dict[str, Any]:
    schema = Recipe.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "optcli recipe"
    return schema
