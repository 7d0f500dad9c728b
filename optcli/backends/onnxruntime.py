"""ONNX Runtime on CPU for any ONNX artifact of the run."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from optcli.backends.base import OnnxEngine, OnnxEngineConfig
from optcli.ort_session import create_session

GraphOptimization = Literal["disabled", "basic", "extended", "all"]

__all__ = ["GraphOptimization", "OnnxRuntimeConfig", "OnnxRuntimeEngine", "create_session", "safe_level"]


class OnnxRuntimeConfig(OnnxEngineConfig):
    engine: Literal["onnxruntime"] = "onnxruntime"
    provider: Literal["cpu"] = Field("cpu", description="Execution provider.")
    threads: int | None = Field(None, ge=1, description="Intra-op threads. Default: ORT's (physical cores).")
    graph_optimization: GraphOptimization = Field("all", description="ORT session graph optimization level.")
    allow_spinning: bool = Field(
        True,
        description="Let idle ORT threads spin (ORT's default: lowest latency on a dedicated machine). Turn "
        "off on shared or oversubscribed CPUs, where spinning threads steal cores from the work.",
    )


def safe_level(level: str, precision: str) -> str:
    """Cap ORT graph optimization where a level is known to compute wrong results.

    ORT 1.32's extended-level QDQ fusions mishandle FP8 (E4M3) Q/DQ on the CPU provider: the
    digits example's logits move by 200% relative L2 at 'extended'/'all' and by 5% (the FP8
    rounding the ONNX reference evaluator also gives) at 'basic'.
    """
    if precision == "fp8" and level in ("extended", "all"):
        return "basic"
    return level


class OnnxRuntimeEngine(OnnxEngine):
    config: OnnxRuntimeConfig

    def default_label(self) -> str:
        return f"onnxruntime-{self.precision}"

    @property
    def precision(self) -> str:
        return self.context.precisions[self._artifact()[0]]

    @property
    def effective_level(self) -> str:
        return safe_level(self.config.graph_optimization, self.precision)

    def _load_impl(self) -> None:
        _, path = self._artifact()
        self._session = create_session(
            path, threads=self.config.threads, level=self.effective_level, spinning=self.config.allow_spinning
        )
        self._input_names = [i.name for i in self._session.get_inputs()]

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, {name: feeds[name] for name in self._input_names})

    def _bind_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.ordered_feeds(feeds, self._input_names)

    def _run_bound_impl(self, bound: dict[str, np.ndarray]) -> None:
        self._session.run(None, bound)

    def _close_impl(self) -> None:
        del self._session

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {
            **super().describe(),
            "runtime": f"onnxruntime {ort.__version__}",
            "provider": "CPUExecutionProvider",
            "threads": self.config.threads,
            "graph_optimization": self.effective_level,
        }
