"""Recipe YAML: a SafeLoader that bounds alias expansion and refuses duplicate keys, plus the map from
each field path to the line it was written on (for file:line in every error)."""

from __future__ import annotations

from typing import Any

import yaml

from optcli.errors import RecipeError

# Nodes reached through aliases, counted per alias use. Real recipes reuse a few sections (a few
# hundred nodes); a "billion laughs" document passes this within a few lines and is refused before
# anything walks the expanded tree.
ALIAS_NODE_BUDGET = 10_000
MAX_DEPTH = 100  # nesting levels; a recipe uses fewer than 10, and the composer recurses per level
_MERGE_TAG = "tag:yaml.org,2002:merge"

LineMap = dict[tuple[str, ...], int | None]  # None: the value came from --set


class _Refused(yaml.YAMLError):
    def __init__(self, message: str, mark: yaml.Mark) -> None:
        super().__init__(message)
        self.message, self.line = message, mark.line + 1


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader that knows each node's expanded size, so aliases cannot multiply the document."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._sizes: dict[int, int] = {}  # id(node) -> nodes in its expansion; set once composed
        self._aliased = 0
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            raise _Refused(
                f"the YAML nests deeper than {MAX_DEPTH} levels; refused", self.peek_event().start_mark
            )
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is left to PyYAML's own error
                size = self._sizes.get(id(target))
                if size is None:
                    problem = f"alias '*{event.anchor}' is inside its own anchor (a recursive structure)"
                    raise _Refused(problem, event.start_mark)
                self._aliased += size
                if self._aliased > ALIAS_NODE_BUDGET:
                    raise _Refused(
                        f"YAML aliases expand past {ALIAS_NODE_BUDGET} nodes at '*{event.anchor}'; refused "
                        "(a recipe needs far fewer: write the repeated section out, or nest fewer aliases)",
                        event.start_mark,
                    )
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is not None and id(node) not in self._sizes:
            self._sizes[id(node)] = 1 + sum(self._sizes[id(child)] for child in _children(node))
        return node

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        first: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                continue
            ident = (key.tag, key.value)
            if ident in first:  # PyYAML would keep the last silently
                raise _Refused(f"duplicate key '{key.value}' (first at line {first[ident]})", key.start_mark)
            first[ident] = key.start_mark.line + 1
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load_yaml(text: str, file: str) -> tuple[dict[str, Any], LineMap]:
    """The recipe mapping and its line map; every YAML problem is a RecipeError at file:line."""
    loader = RecipeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        raise RecipeError(exc.message, file=file, line=exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"invalid YAML: {problem}", file=file, line=line) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        problem = "the recipe must be a YAML mapping (key: value) at the top level"
        raise RecipeError(problem, file=file, line=1)
    lines: LineMap = {}
    _collect_lines(node, (), lines)
    return data, lines


def load_value(text: str) -> Any:
    """A `--set` value: YAML under the same alias budget and duplicate-key check as a recipe file."""
    loader = RecipeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


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


def locate(file: str, lines: LineMap, path: tuple[str, ...]) -> tuple[str, int | None]:
    """(file, line) for a field: its own line, else its nearest written parent's; --set values say so."""
    known = path
    while known and known not in lines:
        known = known[:-1]
    line = lines.get(known)
    if known in lines and line is None:
        file = f"{file} (--set {'.'.join(known)})"
    return file, line
