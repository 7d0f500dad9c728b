"""Small helpers for tests that build real ONNX models from tiny torch models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optcli.backends.onnxruntime import create_session
from optcli.specs import DimRange, InputSpec, ShapeResolver


def resolver_for(
    *inputs: tuple[str, list],
    dims: dict[str, tuple[int, int, int]] | None = None,
    dtypes: dict[str, str] | None = None,
) -> ShapeResolver:
    specs = [
        InputSpec(name=name, shape=shape, dtype=(dtypes or {}).get(name, "float32")) for name, shape in inputs
    ]
    ranges = {
        name: DimRange(min=lo, opt=opt, max=hi)
        for name, (lo, opt, hi) in (dims or {"batch": (1, 2, 64)}).items()
    }
    return ShapeResolver(specs, ranges, "batch")


def run_onnx(path: Path, feeds: dict[str, np.ndarray], level: str = "all") -> list[np.ndarray]:
    session = create_session(path, level=level)
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
