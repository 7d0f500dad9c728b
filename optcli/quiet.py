"""Silence third-party loggers that talk to users about their own internals."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

TORCH_EXPORT_LOGGERS = ("torch", "onnxscript", "onnx_ir")  # and their children
TORCHAO_LOGGERS = ("torchao", "torch.utils._pytree")


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.ERROR) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    previous = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, previous):
            lg.setLevel(old)
