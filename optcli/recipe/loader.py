"""Read a recipe: YAML -> overrides (--set) -> validated Recipe; errors name file:line and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from optcli.errors import RecipeError
from optcli.recipe.models import Recipe

LineMap = dict[tuple[str, ...], int]


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
    file = str(source) if source else "<recipe>"
    data, lines = _parse_yaml(text, file)
    _apply_overrides(data, lines, overrides or [])
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        raise _recipe_error(exc, file, lines, data) from None
    return recipe.bind_location(source)


def _parse_yaml(text: str, file: str) -> tuple[dict[str, Any], LineMap]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"invalid YAML: {problem}", file=file, line=line) from None
    if not isinstance(data, dict):
        raise RecipeError(
            "the recipe must be a YAML mapping (key: value) at the top level", file=file, line=1
        )
    lines: LineMap = {}
    _collect_lines(node, (), lines)
    return data, lines


def _collect_lines(node: yaml.Node | None, path: tuple[str, ...], out: LineMap) -> None:
    if node is None:
        return
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            out[child] = key.start_mark.line + 1
            _collect_lines(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, (*path, str(index)), out)


def _field_path(data: Any, loc: tuple[Any, ...]) -> tuple[str, ...]:
    """The location as the user wrote it: drop pydantic's union-tag segments ('files', 'onnxruntime')."""
    path: list[str] = []
    current: Any = data
    for item in loc:
        key = "validate" if item == "validate_" else item
        if isinstance(current, dict):
            if key in current:
                path.append(str(key))
                current = current[key]
                continue
            if key in (current.get("type"), current.get("engine"), current.get("name")):
                continue  # the discriminator value pydantic inserts for a tagged union member
        elif isinstance(current, list) and isinstance(key, int) and key < len(current):
            path.append(str(key))
            current = current[key]
            continue
        if isinstance(key, str) and (key.startswith("function-") or "[" in key):
            continue
        path.append(str(key))
        current = None
    return tuple(path)


def _recipe_error(exc: ValidationError, file: str, lines: LineMap, data: Any) -> RecipeError:
    first = exc.errors()[0]
    path = _field_path(data, first["loc"])
    known = path
    while known and known not in lines:
        known = known[:-1]
    message = _message(first)
    more = len(exc.errors()) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''}; run `optcli recipe validate`)"
    line = lines.get(known)
    if known in lines and line is None:  # the value came from --set
        file = f"{file} (--set {'.'.join(known)})"
    return RecipeError(message, file=file, line=line, field=".".join(path) or None)


def _message(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; `optcli recipe schema` lists every field)"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        tag, expected = ctx.get("tag"), ctx.get("expected_tags")
        return f"unknown {ctx.get('discriminator', 'kind')} {tag!r}; expected one of {expected}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if "input" in error and kind not in ("value_error",) and not isinstance(error["input"], dict):
        msg += f" (got {error['input']!r})"
    return msg


def all_errors(
    text: str, *, source: Path | None = None, overrides: list[str] | None = None
) -> list[RecipeError]:
    """Every problem in a recipe (for `optcli recipe validate`), not only the first."""
    file = str(source) if source else "<recipe>"
    try:
        data, lines = _parse_yaml(text, file)
        _apply_overrides(data, lines, overrides or [])
        Recipe.model_validate(data)
    except RecipeError as exc:
        return [exc]
    except ValidationError as exc:
        return [
            _recipe_error(ValidationError.from_exception_data(exc.title, [err]), file, lines, data)  # type: ignore[list-item]
            for err in exc.errors()
        ]
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
        lines[path] = None  # type: ignore[assignment]


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply '--set a.b.0.c=value' to the raw recipe dict; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set expects 'dotted.field=value', got {assignment!r}", file="--set")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
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
