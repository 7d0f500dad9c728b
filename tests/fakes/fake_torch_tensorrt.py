"""A FAKE `torch_tensorrt` module for tests: it compiles nothing and needs no GPU or TensorRT.

It records the arguments of Input(), compile() and save(); compile() returns the module it was given,
so a "compiled" engine computes exactly what PyTorch does. Passing tests with it say nothing about
real Torch-TensorRT behaviour: they check what optcli asks Torch-TensorRT to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "2.13.0+fake"

calls: list[tuple[str, Any, dict[str, Any]]] = []


class Input:
    """Records its keyword arguments (min_shape, opt_shape, max_shape, dtype, name, shared_dims)."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"FakeInput({self.kwargs})"


def compile(module: Any, ir: str = "default", **kwargs: Any) -> Any:
    calls.append(("compile", module, {"ir": ir, **kwargs}))
    return module


def save(module: Any, file_path: str = "", **kwargs: Any) -> None:
    calls.append(("save", module, {"file_path": file_path, **kwargs}))
    Path(file_path).write_text("FAKE exported program written by tests/fakes/fake_torch_tensorrt.py\n")


def reset() -> None:
    calls.clear()


def last(kind: str) -> dict[str, Any]:
    """Keyword arguments of the last recorded call of `kind` ('compile' or 'save')."""
    return next(kwargs for name, _, kwargs in reversed(calls) if name == kind)
