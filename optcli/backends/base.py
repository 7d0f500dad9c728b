"""The interface every engine implements; validation and benchmark are written once against it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
from pydantic import Field

from optcli.errors import StageError
from optcli.strict import StrictModel

ArtifactName = Literal["exported", "optimized", "quantized", "final"]


class EngineConfig(StrictModel):
    """Fields shared by every `build:` entry."""

    name: str | None = Field(None, description="Label in reports and gates. Default: '<engine>-<precision>'.")


@dataclass
class EngineContext:
    """What an engine may use to build itself: artifacts so far and a way to get the PyTorch model."""

    artifacts: dict[str, Path]
    precisions: dict[str, str]
    torch_model: Callable[[], Any]
    input_names: list[str]
    output_names: list[str]
    extras: dict[str, Any] = field(default_factory=dict)


class Engine(ABC):
    """load() once, run() many times, close(). Use as a context manager."""

    def __init__(self, config: EngineConfig, context: EngineContext) -> None:
        self.config = config
        self.context = context
        self._loaded = False

    # -- public API with state checks -------------------------------------------------
    def load(self) -> Engine:
        if not self._loaded:
            self._load_impl()
            self._loaded = True
        return self

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run one batch of named inputs; returns the outputs flattened in ONNX output order."""
        if not self._loaded:
            raise StageError(f"engine '{self.label}' was run before load()")
        return self._run_impl(feeds)

    def close(self) -> None:
        if self._loaded:
            self._close_impl()
            self._loaded = False

    def __enter__(self) -> Engine:
        return self.load()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- description --------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.config.name or self.default_label()

    @abstractmethod
    def default_label(self) -> str: ...

    @property
    @abstractmethod
    def precision(self) -> str: ...

    def describe(self) -> dict[str, Any]:
        """What this engine is, for the report (runtime, device, artifact, options)."""
        return {"engine": self.config.model_dump()["engine"], "precision": self.precision}

    # -- hooks ----------------------------------------------------------------------------
    @abstractmethod
    def _load_impl(self) -> None: ...

    @abstractmethod
    def _run_impl(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def _close_impl(self) -> None:  # noqa: B027 - optional hook
        pass
