"""TensorRT engine: build (or reuse) a plan from an ONNX artifact, run it with torch CUDA buffers.

Precision comes from the ONNX graph (Q/DQ for INT8/FP8, casts for FP16): the network is strongly typed.
Reads `context.extras["inputs"]` (list[InputSpec]) and `context.extras["dims"]` (dict[str, DimRange]) for
the optimization profile; without them only static-shape models build.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from optcli.atomic import atomic_write
from optcli.backends.base import OnnxEngine, Unavailable
from optcli.backends.tensorrt import compat
from optcli.backends.tensorrt.build import (
    BuildOptions,
    build_plan,
    merge_dims,
    onnx_digest,
    plan_cache_key,
    profile_shapes,
)
from optcli.backends.tensorrt.config import TensorRTConfig
from optcli.backends.tensorrt.inspector import PrecisionSummary, higher_precision_warning, summarize
from optcli.backends.tensorrt.runtime import Bound, DeviceRunner, PlanSession
from optcli.errors import MissingDependencyError, StageError

TIMING_CACHE_NAME = "trt-timing.cache"


class TensorRTEngine(OnnxEngine):
    config: TensorRTConfig

    @classmethod
    def unavailable(cls, config: TensorRTConfig, precision: str | None = None) -> Unavailable | None:
        """Checked before any expensive stage. `precision` (the artifact's, when the caller knows it)
        adds the FP8 compute-capability check; load() repeats it with the real artifact precision."""
        try:
            trt = compat.import_tensorrt()
        except MissingDependencyError as exc:
            return Unavailable(f"tensorrt: {exc.message}", compat.INSTALL_HINT)
        problem = compat.legacy_flags_problem(trt, config.legacy_precision_flags, precision)
        if problem:
            return Unavailable(f"tensorrt: {problem}", compat.LEGACY_FIX)
        gpu = compat.current_gpu()
        if gpu is None:
            return Unavailable("tensorrt: no CUDA device is visible to PyTorch", compat.NO_GPU_FIX)
        return compat.device_problem(precision or "", config.hardware_compatibility, gpu)

    # -- description ----------------------------------------------------------------------
    def default_label(self) -> str:
        return f"tensorrt-{self.precision}"

    @property
    def precision(self) -> str:
        return self.context.precisions[self._artifact()[0]]

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = super().describe()
        if not self._loaded:
            return info
        summary: PrecisionSummary = self._summary
        return {
            **info,
            "runtime": f"tensorrt {self._trt.__version__}",
            "device": self._gpu.name,
            "compute_capability": ".".join(map(str, self._gpu.capability)),
            "plan": str(self._plan_path),
            "plan_reused": self._build_seconds is None,
            "build_seconds": self._build_seconds,
            "timing_cache": str(self._timing_cache),
            "optimization_level": self.config.optimization_level,
            "workspace_mb": self.config.workspace_mb,
            "hardware_compatibility": self.config.hardware_compatibility,
            "strongly_typed": not self.config.legacy_precision_flags,
            "cuda_graph": self.config.cuda_graph,
            "profile": {n: {"min": lo, "opt": op, "max": hi} for n, (lo, op, hi) in self._shapes.items()},
            "layer_precisions": summary.counts if summary.detailed else "not recorded (plan not DETAILED)",
            "precision_warning": self.precision_warning,
        }

    @property
    def precision_warning(self) -> str | None:
        """Set after load() when a quantized artifact's engine runs mostly in higher precision."""
        return higher_precision_warning(self.label, self.precision, self._summary) if self._loaded else None

    # -- load -------------------------------------------------------------------------------
    def _load_impl(self) -> None:
        trt = self._trt = compat.import_tensorrt()
        compat.check_legacy_flags(trt, self.config.legacy_precision_flags, self.precision)
        gpu = compat.current_gpu()
        if gpu is None:
            raise MissingDependencyError(
                "tensorrt: no CUDA device is visible to PyTorch", hint=compat.NO_GPU_FIX
            )
        problem = compat.device_problem(self.precision, self.config.hardware_compatibility, gpu)
        if problem:
            raise MissingDependencyError(problem.reason, hint=problem.fix)
        self._gpu = gpu
        _, onnx_path = self._artifact()
        self._shapes = self._profile_shapes()
        options = BuildOptions(
            precision=self.precision,
            workspace_mb=self.config.workspace_mb,
            optimization_level=self.config.optimization_level,
            hardware_compatibility=self.config.hardware_compatibility,
            legacy_precision_flags=self.config.legacy_precision_flags,
            shapes=self._shapes,
        )
        key = plan_cache_key(gpu, trt.__version__, onnx_digest(onnx_path), options)
        self._plan_path = onnx_path.parent / f"tensorrt-{key}.plan"
        self._timing_cache = self._timing_cache_path(onnx_path)
        self._session = self._open_plan(onnx_path, options)
        self._runner: DeviceRunner | None = None
        self._summary = self._inspect()

    def _timing_cache_path(self, onnx_path: Path) -> Path:
        chosen = self.config.timing_cache
        if chosen is None:
            return onnx_path.parent / TIMING_CACHE_NAME
        run_dir = Path(self.context.extras.get("work_dir", onnx_path.parent))
        return chosen if chosen.is_absolute() else run_dir / chosen  # like other run outputs

    def _profile_shapes(self) -> dict[str, Any]:
        inputs, dims = self.context.extras.get("inputs"), self.context.extras.get("dims")
        if inputs is None or dims is None:
            return {}  # static-shape models still build; dynamic inputs fail with a clear message
        return profile_shapes(list(inputs), merge_dims(dict(dims), self.config.profile))

    def _open_plan(self, onnx_path: Path, options: BuildOptions) -> PlanSession:
        """Reuse the plan with this key when it loads; otherwise build, then cache it (never a failure)."""
        logger = compat.shared_logger(self._trt)
        self._build_seconds: float | None = None
        if self._plan_path.exists():
            try:
                return PlanSession(self._trt, logger, self._plan_path.read_bytes())
            except StageError:
                self._plan_path.unlink(missing_ok=True)  # corrupt or foreign: rebuild below
        start = time.perf_counter()
        plan = build_plan(self._trt, logger, onnx_path, options, self._timing_cache)
        self._build_seconds = round(time.perf_counter() - start, 3)
        session = PlanSession(self._trt, logger, plan)
        atomic_write(self._plan_path, plan)
        return session

    def _inspect(self) -> PrecisionSummary:
        """Layer precisions at the profile's opt shapes (dynamic tensors show no format without shapes)."""
        session = self._session
        session.set_input_shapes({n: session.profile_range(n)[1] for n in session.inputs})
        try:
            return summarize(session.inspect())
        except ValueError:  # malformed inspector JSON is a reporting gap, not a reason to fail the run
            return PrecisionSummary(detailed=False)

    # -- run --------------------------------------------------------------------------------
    def _device(self) -> DeviceRunner:
        if self._runner is None:
            self._runner = DeviceRunner(self._session)
        return self._runner

    def _output_order(self) -> list[str]:
        wanted = list(self.context.output_names)
        return wanted if wanted and set(wanted) <= set(self._session.outputs) else list(self._session.outputs)

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        runner = self._device()
        bound = runner.bind(feeds)  # validation: no CUDA graph, fresh shapes each call
        runner.execute(bound)
        return runner.fetch(bound, self._output_order())

    def _bind_impl(self, feeds: dict[str, np.ndarray]) -> Bound:
        return self._device().bind(feeds, graph=self.config.cuda_graph)

    def _run_bound_impl(self, bound: Bound) -> None:
        self._device().execute(bound)

    def _synchronize_impl(self) -> None:
        if self._runner is not None:
            self._runner.synchronize()

    def _close_impl(self) -> None:
        self._runner = None
        self._session.close()
