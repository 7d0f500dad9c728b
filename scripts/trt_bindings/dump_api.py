"""Print the public API of an importable `tensorrt` (or `tensorrt_bindings`) module as JSON.

Classes with their methods' pybind11 signature lines and properties (and whether they are writable),
enums with their member names, module-level functions. Run it where the module imports, e.g. with the
stub libraries on LD_LIBRARY_PATH: `python dump_api.py > api.json`.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import json
import re
import sys
from typing import Any

# `name(self: tensorrt.X, a: int, b: str = 'x') -> T` lines; overloaded methods list several.
SIGNATURE = re.compile(r"^(?:\d+\. )?(\w+)\((.*)\)(?: -> (.+))?$")


def split_params(text: str) -> list[str]:
    """Top-level comma split: annotations such as `tuple[int, int]` hold commas of their own."""
    params, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            params.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        params.append(current.strip())
    return params


def parse_param(text: str) -> dict[str, Any]:
    name_type, _, default = text.partition("=")
    name, _, annotation = name_type.partition(":")
    return {"name": name.strip(), "type": annotation.strip(), "default": bool(default.strip())}


def signatures(name: str, doc: str | None) -> list[dict[str, Any]]:
    found = []
    for line in (doc or "").splitlines():
        match = SIGNATURE.match(line.strip())
        if match and match.group(1) == name and match.group(2) != "*args, **kwargs":
            params = [parse_param(p) for p in split_params(match.group(2))]
            found.append({"params": params, "returns": match.group(3) or ""})
    return found


def is_enum(obj: Any) -> bool:
    return isinstance(obj, type) and (issubclass(obj, enum.Enum) or hasattr(obj, "__members__"))


def describe_class(cls: type) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for name in dir(cls):
        if name.startswith("_") and name != "__init__":
            continue
        raw = inspect.getattr_static(cls, name)
        if isinstance(raw, property):
            members[name] = {"kind": "property", "writable": raw.fset is not None}
        elif callable(raw) or isinstance(raw, (staticmethod, classmethod)):
            attr = getattr(cls, name)
            if is_enum(attr):
                members[name] = {"kind": "enum", "members": sorted(attr.__members__)}
            else:
                members[name] = {"kind": "method", "signatures": signatures(name, attr.__doc__)}
        else:
            members[name] = {"kind": "value"}
    return members


def dump(module: Any) -> dict[str, Any]:
    api: dict[str, Any] = {"version": module.__version__, "enums": {}, "classes": {}, "functions": {}}
    for name in dir(module):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if is_enum(obj):
            api["enums"][name] = sorted(obj.__members__)
        elif isinstance(obj, type):
            api["classes"][name] = describe_class(obj)
        elif callable(obj):
            api["functions"][name] = signatures(name, obj.__doc__)
    return api


if __name__ == "__main__":
    module = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "tensorrt_bindings")
    json.dump(dump(module), sys.stdout, indent=1, sort_keys=True)
