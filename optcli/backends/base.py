"""The interface every engine implements; validation and benchmark are written once against it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from optcli.errors import StageError
from optcli.gates import BENCHMARK_METRICS, VALIDATION_METRICS, check_gate_names
from optcli.strict import StrictModel

ArtifactName = Literal["exported", "optimized", "quantized", "quantized_nncf", "quantized_mixed", "final"]
FINAL_ORDER = ("quantized", "optimized", "exported")  # what 'final' means, first match wins


@dataclass(frozen=True)
class Unavailable:
    """Why an engine cannot run on this machine, and what would fix it (the `doctor` line)."""

    reason: str
    fix: str


class EngineConfig(StrictModel):
    """Fields shared by every `build:` entry."""

    name: str | None = Field(None, description="Label in reports and gates. Default: '<engine>-<precision>'.")
    gates: dict[str, str] = Field(
        default_factory=dict,
        description="Gates for this engine only, added to (or replacing, per metric) validate.gates and "
        "benchmark.gates, e.g. {speedup: '>= 4', top1_agreement: '>= 0.99'}.",
    )

    @field_validator("gates")
    @classmethod
    def _known_gates(cls, gates: dict[str, str]) -> dict[str, str]:
        return check_gate_names(gates, {**VALIDATION_METRICS, **BENCHMARK_METRICS})


class OnnxEngineConfig(EngineConfig):
    """Fields shared by engines that run one of the pipeline's ONNX files."""

    artifact: ArtifactName = Field(
        "final",
        description="Which ONNX file to run: exported, optimized (after passes), quantized, quantized_nncf "
        "and quantized_mixed (target cpu), or final (quantized if any, else optimized, else exported).",
    )


@dataclass
class EngineContext:
    """What an engine may use to build itself: artifacts so far and a way to get the PyTorch model."""

    artifacts: dict[str, Path]
    precisions: dict[str, str]
    torch_model: Callable[[], Any]
    input_names: list[str]
    output_names: list[str]
    extras: dict[str, Any] = field(default_factory=dict)

    def artifact(self, name: str, engine: str) -> tuple[str, Path]:
        """Resolve a `build[].artifact` name; 'final' is the last model the pipeline produced."""
        if name == "final":
            name = next((n for n in FINAL_ORDER if n in self.artifacts), name)
        if name not in self.artifacts:
            raise StageError(
                f"build: engine '{engine}' asks for artifact '{name}', which this recipe does not produce "
                f"(it produces: {', '.join(self.artifacts) or 'nothing yet'})"
            )
        return name, self.artifacts[name]


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

    def bind(self, feeds: dict[str, np.ndarray]) -> Any:
        """Prepare inputs once (device copies, tensors) for repeated timed runs."""
        if not self._loaded:
            raise StageError(f"engine '{self.label}' was bound before load()")
        return self._bind_impl(feeds)

    def run_bound(self, bound: Any) -> None:
        """Run on prepared inputs without converting outputs: what the benchmark times."""
        self._run_bound_impl(bound)

    def synchronize(self) -> None:
        """Wait for queued device work; benchmarks call it before reading the clock."""
        self._synchronize_impl()

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

    @classmethod
    def unavailable(cls, config: EngineConfig, precision: str | None = None) -> Unavailable | None:
        """None when this engine can be built here; checked before any expensive stage.

        `precision` is the precision of the artifact the engine will run, when known (FP8 needs
        newer GPUs than FP16)."""
        return None

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

    def _extra(self, key: str) -> Any:
        """What the build stage passes beside artifacts (inputs, dims, work_dir, calibration_batches)."""
        if key not in self.context.extras:
            raise StageError(
                f"build: engine '{self.label}' needs context.extras['{key}'] from the build stage"
            )
        return self.context.extras[key]

    # -- hooks ----------------------------------------------------------------------------
    @abstractmethod
    def _load_impl(self) -> None: ...

    @abstractmethod
    def _run_impl(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...

    def _bind_impl(self, feeds: dict[str, np.ndarray]) -> Any:
        return feeds

    def _run_bound_impl(self, bound: Any) -> None:
        self._run_impl(bound)

    def _synchronize_impl(self) -> None:  # noqa: B027 - optional hook: host engines are synchronous
        pass

    def _close_impl(self) -> None:  # noqa: B027 - optional hook
        pass


class OnnxEngine(Engine):
    """An engine that runs one of the pipeline's ONNX files: artifact resolution and its report fields."""

    config: OnnxEngineConfig

    def _artifact(self) -> tuple[str, Path]:
        # Not self.label in messages: the default label needs the artifact's precision.
        return self.context.artifact(self.config.artifact, self.config.name or self.config.engine)  # type: ignore

    def describe(self) -> dict[str, Any]:
        name, path = self._artifact()
        return {**super().describe(), "artifact": name, "path": str(path)}

    @staticmethod
    def ordered_feeds(feeds: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        """The model's inputs in its order, C-contiguous (runtimes copy or reject strided arrays)."""
        return {name: np.ascontiguousarray(feeds[name]) for name in names}
