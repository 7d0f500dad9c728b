"""Silence third-party loggers that talk to users about their own internals."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

TORCH_EXPORT_LOGGERS = ("torch", "onnxscript", "onnx_ir")  # and their children
TORCHAO_LOGGERS = ("torchao", "torch.utils._pytree")
VERBOSE_ENV = "OPTCLI_VERBOSE"  # `optcli --verbose` sets it (child processes inherit it)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def quiet_loggers(*names: str, level: int = logging.ERROR) -> Iterator[None]:
    """Raise the named loggers to `level` inside the block; with --verbose, leave them as they are."""
    if verbose():
        yield
        return
    loggers = [logging.getLogger(name) for name in names]
    previous = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, previous):
            lg.setLevel(old)
