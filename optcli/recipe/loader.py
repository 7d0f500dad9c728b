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
    verbatim = _apply_overrides(data, lines, overrides or [])
    try:
        recipe = recipe_model(data).model_validate(data)
    except ValidationError as exc:
        problems = _explained(located_errors(exc, file, lines, data), verbatim)
        raise (problems[0] if len(problems) == 1 else RecipeProblems(problems)) from None
    return recipe.bind_location(source)


def all_errors(
    text: str, *, source: Path | None = None, overrides: list[str] | None = None
) -> list[RecipeError]:
    """Every problem in a recipe (for `optcli recipe validate`), not only the first."""
    file = str(source) if source else "<recipe>"
    try:
        data, lines = load_yaml(text, file)
        verbatim = _apply_overrides(data, lines, overrides or [])
        recipe_model(data).model_validate(data)
    except RecipeError as exc:
        return [exc]
    except ValidationError as exc:
        return _explained(located_errors(exc, file, lines, data), verbatim)
    return []


def recipe_model(data: Any) -> type[Any]:
    """`pipeline: llm` selects the LLM recipe (a Hugging Face checkpoint, optcli/llm); else the ONNX one."""
    if isinstance(data, dict) and data.get("pipeline") == "llm":
        from optcli.llm.recipe import LlmRecipe

        return LlmRecipe
    return Recipe


def _explained(problems: list[RecipeError], verbatim: dict[str, str]) -> list[RecipeError]:
    """A --set value taken as a string (not valid YAML) that the field then rejects: say why it was
    a string, so '--set build=[x' points at the missing ']' rather than only at 'not a list'."""
    for problem in problems:
        for key, why in verbatim.items():
            if problem.field and (problem.field == key or problem.field.startswith(key + ".")):
                problem.hint = (
                    f"the --set value of '{key}' is not valid YAML ({why}), so it was read as a string"
                )
    return problems


def _apply_overrides(data: dict[str, Any], lines: LineMap, overrides: list[str]) -> dict[str, str]:
    """Apply every --set; returns the fields whose value was taken verbatim, with the YAML problem."""
    verbatim: dict[str, str] = {}
    for override in overrides:
        key = override.partition("=")[0].strip()
        if key.startswith("build.") and "build" not in data:
            # `--set build.0.threads=4` on a recipe relying on the default build list.
            from optcli.backends.onnxruntime import OnnxRuntimeConfig

            data["build"] = [
                OnnxRuntimeConfig().model_dump(exclude_defaults=True) | {"engine": "onnxruntime"}
            ]
        why = apply_override(data, override)
        if why is not None:
            verbatim[key] = why
        # Errors under an overridden field point at --set, not at a recipe line.
        path = tuple(key.split("."))
        for known in [k for k in lines if k[: len(path)] == path]:
            del lines[known]
        lines[path] = None
    return verbatim


def apply_override(data: dict[str, Any], assignment: str) -> str | None:
    """Apply '--set a.b.0.c=value' to the raw recipe dict. The value is parsed as YAML; one that is
    not valid YAML (a gate such as '>= 0.98' reads as a broken block scalar) is taken as the string
    it is, and the field's own validation decides. Returns the YAML problem when it was."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set expects 'dotted.field=value', got {assignment!r}", file="--set")
    value, why = _override_value(raw, key.strip())
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
    return why


def _override_value(raw: str, key: str) -> tuple[Any, str | None]:
    if not raw.strip():
        return "", None
    if raw.lstrip().startswith((">", "|")):
        # A block scalar's text starts on the next line, which a one-line value never has: YAML
        # would read '>2' as '' and '> 2' as an error. Neither is what anyone typed it for.
        return raw.strip(), "a leading '>' or '|' starts a YAML block scalar"
    try:
        return load_value(raw), None
    except yaml.MarkedYAMLError as exc:  # a syntax error: the text was not meant as YAML structure
        return raw.strip(), str(exc.problem or exc).strip()
    except yaml.YAMLError as exc:  # a refusal (duplicate key, alias budget) stays an error
        raise RecipeError(f"value {raw!r} is refused: {exc}", file="--set", field=key) from None


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
