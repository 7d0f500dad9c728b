"""The onnxruntime_gpu engine: a session on the requested provider, checked for CPU fallback, IO binding."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from optcli.backends.base import OnnxEngine, Unavailable
from optcli.backends.onnxruntime import OnnxRuntimeEngine
from optcli.backends.onnxruntime_gpu import iobinding
from optcli.backends.onnxruntime_gpu.config import INSTALL, PROVIDERS, OnnxRuntimeGpuConfig
from optcli.backends.onnxruntime_gpu.libraries import provider_load_error, requirements
from optcli.backends.onnxruntime_gpu.placement import fallback_problem, node_placement
from optcli.backends.onnxruntime_gpu.providers import provider_chain
from optcli.backends.shapes import shape_range
from optcli.errors import MissingDependencyError, StageError
from optcli.ort_session import create_session
from optcli.specs import NUMPY_DTYPES


class OnnxRuntimeGpuEngine(OnnxRuntimeEngine):
    config: OnnxRuntimeGpuConfig  # type: ignore[assignment]

    @classmethod
    def unavailable(cls, config: OnnxRuntimeGpuConfig, precision: str | None = None) -> Unavailable | None:  # type: ignore[override]
        import onnxruntime as ort

        name, available = PROVIDERS[config.provider], ort.get_available_providers()
        if name not in available:
            return Unavailable(
                f"onnxruntime_gpu: this onnxruntime has no {name} (it has: {', '.join(available)})", INSTALL
            )
        # Listed is not loadable: without CUDA the session would quietly run on the CPU.
        if error := provider_load_error(name):
            return Unavailable(f"onnxruntime_gpu: {name} cannot load: {error}", requirements())
        return None

    def default_label(self) -> str:
        return f"onnxruntime-{self.config.provider}-{self.precision}"

    def _load_impl(self) -> None:
        _, path = self._artifact()
        specs, dims = self._extra("inputs"), self._extra("dims")
        work = Path(self.context.extras.get("work_dir") or tempfile.mkdtemp(prefix="optcli-"))
        requested = PROVIDERS[self.config.provider]
        chain = provider_chain(self.config, specs, dims, work, self.precision)
        self._options = {name: opts for name, opts in chain[:-1]}
        (work / "ort_profile").mkdir(parents=True, exist_ok=True)
        prefix = work / "ort_profile" / re.sub(r"[^A-Za-z0-9_.-]+", "_", self.label)
        try:  # no fallback: a provider that throws fails here instead of retrying on CPU
            session = create_session(
                path, level=self.effective_level, providers=chain, profile_prefix=prefix, fallback=False
            )
        except Exception as exc:
            raise self._fallback(f"{requested} failed to start: {str(exc).strip()[:500]}") from exc
        session.disable_fallback()  # a failing run must not be retried on CPU either
        self._session, self._active = session, list(session.get_providers())
        self._input_names = [i.name for i in session.get_inputs()]
        self._output_names = [o.name for o in session.get_outputs()]
        if problem := fallback_problem(requested, self._active, None, self.config.max_cpu_share):
            raise self._fallback(problem)
        self._profile_first_runs(specs, dims)
        if problem := fallback_problem(requested, self._active, self._placement, self.config.max_cpu_share):
            raise self._fallback(problem)

    def _profile_first_runs(self, specs: list[Any], dims: dict[str, Any]) -> None:
        """Two runs at the opt shapes (the first may build TensorRT engines), then stop profiling:
        nothing timed later is profiled."""
        types = {s.name: NUMPY_DTYPES.get(s.dtype, np.dtype(np.float32)) for s in specs}
        feeds = {s.name: np.zeros(shape_range(s, dims).opt, types[s.name]) for s in specs}
        try:
            for _ in range(2):
                self._session.run(None, {name: feeds[name] for name in self._input_names})
        except Exception as exc:
            raise StageError(f"build: '{self.label}' failed its first run: {str(exc).strip()[:500]}") from exc
        self._profile = Path(self._session.end_profiling())
        self._placement = node_placement(json.loads(self._profile.read_text()))

    def _fallback(self, problem: str) -> MissingDependencyError:
        requested = PROVIDERS[self.config.provider]
        why = [f"{requested} cannot load: {error}"] if (error := provider_load_error(requested)) else []
        return MissingDependencyError(
            "; ".join([f"build: engine '{self.label}' is not running on the GPU: {problem}", *why]),
            hint=requirements(),  # unavailable() already stopped runs whose onnxruntime lacks the provider
        )

    def _bind_impl(self, feeds: dict[str, np.ndarray]) -> Any:
        if not self.config.io_binding:
            return super()._bind_impl(feeds)
        ordered = self.ordered_feeds(feeds, self._input_names)
        try:
            return iobinding.bind(self._session, ordered, self._output_names, "cuda", self.config.device_id)
        except Exception as exc:  # e.g. "CUDA Provider not available" when no device is visible
            raise self._fallback(f"binding inputs on cuda:{self.config.device_id} failed: {exc}") from exc

    def _run_bound_impl(self, bound: Any) -> None:
        if isinstance(bound, iobinding.Bound):
            iobinding.run(self._session, bound)
        else:
            self._session.run(None, bound)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        placement = self._placement
        return {
            **OnnxEngine.describe(self),  # not the CPU engine's fields (threads, CPU provider)
            "runtime": f"onnxruntime {ort.__version__}",
            "provider": PROVIDERS[self.config.provider],
            "active_providers": self._active,
            "graph_optimization": self.effective_level,
            "io_binding": self.config.io_binding,
            "provider_options": self._options,
            "nodes_per_provider": placement.nodes,
            "time_share": {p: round(placement.share(p), 3) for p in placement.time_us},
            "profile": str(self._profile),
        }
