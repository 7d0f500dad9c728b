"""ONNX -> ONNX graph passes, looked up by the names recipes use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Union

from pydantic import Field

from optcli.passes import fp16, onnxscript_optimizer, ort_optimizer, shape_inference
from optcli.passes.base import GraphPass, Tolerance

PASSES: dict[str, GraphPass] = {
    module.PASS.name: module.PASS for module in (shape_inference, onnxscript_optimizer, ort_optimizer, fp16)
}

# The recipe's `passes:` entry type: one options model per pass, chosen by its `name`.
PassConfig = Annotated[
    Union[tuple(p.options for p in PASSES.values())],  # noqa: UP007 - built from the registry
    Field(discriminator="name"),
]


def precision_after(pass_names: Iterable[str], start: str = "fp32") -> str:
    """The precision of the model a sequence of passes writes, from what each pass declares."""
    precision = start
    for name in pass_names:
        precision = PASSES[name].produces_precision or precision
    return precision


__all__ = ["PASSES", "GraphPass", "PassConfig", "Tolerance", "precision_after"]
