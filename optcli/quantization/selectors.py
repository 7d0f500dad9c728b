"""Select ONNX nodes by name glob, op type or the PyTorch module they were exported from.

Module paths survive re-export: the dynamo exporter records each node's module scope in its
metadata (`pkg.torch.onnx.name_scopes`), the TorchScript exporter in the node name
('/layer4/layer4.0/conv1/Conv'). Both map to the `named_modules()` path, e.g. `layer4.0.conv1`.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterable

import onnx

NAME_SCOPES_KEY = "pkg.torch.onnx.name_scopes"


def module_chain(node: onnx.NodeProto) -> list[str]:
    """Module paths from the outermost to the innermost module the node belongs to."""
    for prop in node.metadata_props:
        if prop.key == NAME_SCOPES_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                break
            return [s for s in scopes[1:-1] if s]  # drop the root '' and the op's own name
    if node.name.startswith("/"):
        chain: list[str] = []
        for segment in node.name.strip("/").split("/")[:-1]:
            previous = chain[-1] if chain else ""
            full = segment if not previous or segment.startswith(previous + ".") else f"{previous}.{segment}"
            chain.append(full)
        return chain
    return []


def module_path(node: onnx.NodeProto) -> str:
    chain = module_chain(node)
    return chain[-1] if chain else ""


def select_nodes(
    model: onnx.ModelProto, *, names: Iterable[str] = (), modules: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """Node names matching any name glob or module glob, and the patterns that matched nothing."""
    names, modules = list(names), list(modules)
    selected: set[str] = set()
    used: set[str] = set()
    for node in model.graph.node:
        for pattern in names:
            if fnmatch.fnmatchcase(node.name, pattern):
                selected.add(node.name)
                used.add(pattern)
        chain = module_chain(node)
        for pattern in modules:
            if any(fnmatch.fnmatchcase(scope, pattern) for scope in chain):
                selected.add(node.name)
                used.add(pattern)
    return sorted(selected), [p for p in [*names, *modules] if p not in used]
