"""Pydantic's validation errors as recipe problems: file:line, the dotted field as written, a short
message, "did you mean" for misspelled names; several problems travel as one RecipeProblems."""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from optcli.errors import RecipeError, UserInputError
from optcli.recipe.crossfield import FieldProblem
from optcli.recipe.models import Recipe
from optcli.recipe.yaml_source import LineMap, locate

MAX_LISTED = 10  # problems one error message lists; `optcli recipe validate` prints all of them


class RecipeProblems(RecipeError):
    """Several recipe problems: located at the first, each listed on its own line."""

    def __init__(self, problems: list[RecipeError]) -> None:
        first, rest = problems[0], problems[1:]
        text = first.message
        if rest:
            s = "s" if len(rest) > 1 else ""
            text += f" (and {len(rest)} more problem{s}; below, as `optcli recipe validate` lists them)"
            text += "".join(f"\n  {p.message}" for p in rest[: MAX_LISTED - 1])
            if len(rest) > MAX_LISTED - 1:
                text += f"\n  ... and {len(rest) - MAX_LISTED + 1} more"
        UserInputError.__init__(self, text, hint=first.hint)
        self.file, self.line, self.field = first.file, first.line, first.field
        self.problems = problems


def located_errors(exc: ValidationError, file: str, lines: LineMap, data: Any) -> list[RecipeError]:
    """Every error of a failed validation, unknown fields first (a misspelled key is usually also
    the cause of a 'required field is missing' next to it)."""
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    return [_located(error, file, lines, data) for error in errors]


def _located(error: dict[str, Any], file: str, lines: LineMap, data: Any) -> RecipeError:
    path = _field_path(data, error["loc"])
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, FieldProblem):  # a cross-field check names the field below the one validated
        path = (*path, *cause.subpath)
    where, line = locate(file, lines, path)
    return RecipeError(_message(error), file=where, line=line, field=".".join(path) or None)


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


def _message(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        guess = _closest(key, _field_names(_model_at(error["loc"][:-1])))
        if guess:
            return f"unknown field; did you mean '{guess}'? (`optcli recipe schema` lists every field)"
        return "unknown field (check the spelling; `optcli recipe schema` lists every field)"
    if kind == "missing":
        return "required field is missing"
    if kind == "union_tag_invalid":
        tag, expected = ctx.get("tag"), ctx.get("expected_tags")
        text = f"unknown {ctx.get('discriminator', 'kind')} {tag!r}; expected one of {expected}"
        return text + _did_you_mean(str(tag), re.findall(r"'([^']*)'", str(expected)))
    msg = str(error["msg"]).removeprefix("Value error, ")
    if "input" in error and kind not in ("value_error",) and not isinstance(error["input"], dict):
        msg += f" (got {error['input']!r})"
    if kind == "literal_error" and isinstance(error.get("input"), str):
        msg += _did_you_mean(error["input"], re.findall(r"'([^']*)'", str(ctx.get("expected"))))
    return msg


def _did_you_mean(word: str, choices: list[str]) -> str:
    guess = _closest(word, choices)
    return f"; did you mean '{guess}'?" if guess else ""


def _closest(word: str, choices: list[str]) -> str | None:
    matches = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _field_names(model: type[BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The recipe model class at a pydantic error location (following lists, dicts and tagged unions)."""
    current: Any = Recipe
    for item in loc:
        current = _strip(current)
        if isinstance(item, str) and (item.startswith("function-") or "[" in item):
            continue
        members = _union_members(current)
        if members is not None:
            current = next((m for m in members if _tag(m) == item), None)
        elif _is_model(current):
            current = next(
                (f.annotation for n, f in current.model_fields.items() if item in (n, f.alias)), None
            )
        elif get_origin(current) is list and isinstance(item, int):
            current = get_args(current)[0]
        elif get_origin(current) is dict:
            current = get_args(current)[1]
        else:
            return None
        if current is None:
            return None
    current = _strip(current)
    return current if _is_model(current) else None


def _strip(annotation: Any) -> Any:
    """Annotated[X, ...] -> X and X | None -> X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _union_members(annotation: Any) -> list[type[BaseModel]] | None:
    if get_origin(annotation) not in (Union, types.UnionType):
        return None
    members = [a for a in get_args(annotation) if _is_model(a)]
    return members if members and all(_tag(m) is not None for m in members) else None


def _tag(model: type[BaseModel]) -> str | None:
    for name in ("type", "engine", "name"):
        info = model.model_fields.get(name)
        if info is not None and get_origin(info.annotation) is Literal:
            return get_args(info.annotation)[0]
    return None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
