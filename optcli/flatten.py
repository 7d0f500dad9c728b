"""Flatten nested model outputs (tuples, lists, dicts) in the order the ONNX exporter uses."""

from __future__ import annotations

from typing import Any


def flatten_outputs(outputs: Any) -> list[Any]:
    # torch's pytree is what torch.onnx/torch.export flatten with; using it keeps orders equal.
    from torch.utils._pytree import tree_leaves

    return [leaf for leaf in tree_leaves(outputs) if leaf is not None]
