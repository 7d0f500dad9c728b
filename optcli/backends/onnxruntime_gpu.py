"""ONNX Runtime on NVIDIA GPUs (CUDA or TensorRT execution provider), with a check that it really ran there.

ONNX Runtime drops a provider it cannot create with only a log warning ("Failed to create ...",
onnxruntime/python/onnxruntime_pybind_state.cc), and the Python InferenceSession retries on CPU when
creation throws ("Falling back to ...", onnxruntime_inference_collection.py). So after loading we read
session.get_providers() and profile one run to see which provider each node ran on.

Written from ONNX Runtime's sources and docs and tested with fakes: it has not run on a GPU here.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from optcli.backends.base import Engine, OnnxEngineConfig, Unavailable
from optcli.backends.onnxruntime import GraphOptimization, OnnxRuntimeEngine
from optcli.backends.shapes import shape_range
from optcli.errors import MissingDependencyError, StageError, UserInputError
from optcli.specs import NUMPY_DTYPES, DimRange, InputSpec

PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
CPU = "CPUExecutionProvider"
INSTALL = "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"


class OnnxRuntimeGpuConfig(OnnxEngineConfig):
    engine: Literal["onnxruntime_gpu"] = "onnxruntime_gpu"
    provider: Literal["cuda", "tensorrt"] = Field("cuda", description="Execution provider to run on.")
    device_id: int = Field(0, ge=0, description="CUDA device index.")
    graph_optimization: GraphOptimization = Field("all", description="ORT session graph optimization level.")
    io_binding: bool = Field(
        True, description="Benchmark with inputs and outputs kept on the GPU (IO binding)."
    )
    max_cpu_share: float = Field(
        0.5, ge=0, le=1, description="Fail when more than this share of node time ran on the CPU provider."
    )
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "EXHAUSTIVE", description="CUDA EP cuDNN convolution algorithm search."
    )
    trt_fp16_enable: bool = Field(False, description="TensorRT FP16 builder flag (weakly typed TensorRT 10).")
    trt_int8_enable: bool | None = Field(
        None, description="TensorRT INT8 flag, for Q/DQ models. Default: on when the artifact is INT8."
    )
    trt_engine_cache_enable: bool = Field(True, description="Cache built TensorRT engines on disk.")
    trt_engine_cache_path: str | None = Field(
        None, description="Engine cache folder. Default: in the work dir."
    )
    trt_timing_cache_enable: bool = Field(True, description="Reuse TensorRT tactic timings across builds.")
    trt_timing_cache_path: str | None = Field(
        None, description="Timing cache folder. Default: the engine cache's."
    )
    trt_max_workspace_size: int | None = Field(None, ge=1, description="TensorRT workspace limit in bytes.")
    trt_builder_optimization_level: int | None = Field(
        None, ge=0, le=5, description="TensorRT builder level."
    )

    @model_validator(mode="after")
    def _trt_options_need_trt(self) -> OnnxRuntimeGpuConfig:
        trt_set = sorted(f for f in self.model_fields_set if f.startswith("trt_"))
        if self.provider != "tensorrt" and trt_set:
            raise ValueError(f"{', '.join(trt_set)} only apply with provider: tensorrt")
        return self


def _flag(value: bool) -> str:
    # The Python binding takes TensorRT booleans only as 'True'/'False' (or lower case): '1' throws, and
    # the session then falls back to CPU (onnxruntime_pybind_state.cc, "should be 'True' or 'False'").
    return "True" if value else "False"


def trt_profile_shapes(specs: list[InputSpec], dims: dict[str, DimRange]) -> dict[str, str]:
    """trt_profile_{min,opt,max}_shapes as 'name:AxBxC,name2:...' for every input with a named dim.

    ORT needs all three and every dynamic input in them (microsoft/onnxruntime PRs #15546, #17007;
    ParseProfileShapes in the TensorRT EP splits on ',' then ':' then 'x').
    """
    dynamic = [s for s in specs if s.dynamic_dims]
    if bad := [s.name for s in dynamic if re.search(r"[,:]", s.name)]:
        raise UserInputError(
            f"TensorRT EP profile shapes cannot name inputs {bad}: ',' and ':' are separators"
        )
    ranges = {s.name: shape_range(s, dims) for s in dynamic}
    if not ranges:
        return {}
    return {
        f"trt_profile_{which}_shapes": ",".join(
            f"{name}:{'x'.join(str(d) for d in getattr(rng, which))}" for name, rng in ranges.items()
        )
        for which in ("min", "opt", "max")
    }


def trt_options(
    config: OnnxRuntimeGpuConfig,
    specs: list[InputSpec],
    dims: dict[str, DimRange],
    cache: Path,
    precision: str,
) -> dict[str, str]:
    """TensorRT EP provider options (names from tensorrt_provider_options.h, OrtTensorRTProviderOptionsV2)."""
    int8 = config.trt_int8_enable if config.trt_int8_enable is not None else precision == "int8"
    options = {
        "device_id": str(config.device_id),
        "trt_fp16_enable": _flag(config.trt_fp16_enable),
        "trt_int8_enable": _flag(int8),
        "trt_engine_cache_enable": _flag(config.trt_engine_cache_enable),
        "trt_timing_cache_enable": _flag(config.trt_timing_cache_enable),
    }
    if config.trt_engine_cache_enable:
        options["trt_engine_cache_path"] = str(config.trt_engine_cache_path or cache)
    if config.trt_timing_cache_enable:  # a folder; ORT uses the engine cache folder when unset
        options["trt_timing_cache_path"] = str(
            config.trt_timing_cache_path or config.trt_engine_cache_path or cache
        )
    if config.trt_max_workspace_size:
        options["trt_max_workspace_size"] = str(config.trt_max_workspace_size)
    if config.trt_builder_optimization_level is not None:
        options["trt_builder_optimization_level"] = str(config.trt_builder_optimization_level)
    return {**options, **trt_profile_shapes(specs, dims)}


def cuda_options(config: OnnxRuntimeGpuConfig) -> dict[str, str]:
    return {"device_id": str(config.device_id), "cudnn_conv_algo_search": config.cudnn_conv_algo_search}


@dataclass(frozen=True)
class Placement:
    """Nodes and kernel time (us) per execution provider in one profiled run."""

    nodes: dict[str, int]
    time_us: dict[str, int]

    def share(self, provider: str) -> float:
        """Share of kernel time (of node count when no time was recorded) that ran on `provider`."""
        counts = self.time_us if sum(self.time_us.values()) else self.nodes
        total = sum(counts.values())
        return counts.get(provider, 0) / total if total else 0.0


def node_placement(events: list[dict[str, Any]]) -> Placement:
    """Which provider ran each node, from ORT's profiling JSON (enable_profiling; a Chrome trace).

    Node events have cat 'Node', name '<node>_kernel_time' and args.provider (as in a real ORT 1.32
    profile). Only the last 'model_run' counts: the first run can include TensorRT engine builds.
    """
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    last = max(runs, key=lambda e: e.get("ts", 0)) if runs else None
    provider_of: dict[str, str] = {}
    time_us: Counter[str] = Counter()
    for event in events:
        name, provider = str(event.get("name", "")), (event.get("args") or {}).get("provider")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time") or not provider:
            continue
        if last and not last["ts"] <= event.get("ts", 0) <= last["ts"] + last.get("dur", 0):
            continue
        provider_of[name.removesuffix("_kernel_time")] = provider
        time_us[provider] += int(event.get("dur", 0))
    return Placement(dict(Counter(provider_of.values())), dict(time_us))


def fallback_problem(
    requested: str, active: list[str], placement: Placement | None, max_cpu: float
) -> str | None:
    """Why the session is not really running on `requested`, or None."""
    if requested not in active:
        return f"ONNX Runtime did not enable {requested}; the session runs on {', '.join(active)}"
    if placement is None:
        return None
    if not placement.nodes.get(requested):
        return f"no node ran on {requested} (nodes per provider: {placement.nodes})"
    if (cpu := placement.share(CPU)) > max_cpu:
        return f"{cpu:.0%} of node time ran on the CPU provider (nodes per provider: {placement.nodes})"
    return None


@dataclass
class _Bound:
    binding: Any
    values: list[Any]  # keeps the device copies alive while bound


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
        return None

    def default_label(self) -> str:
        return f"onnxruntime-{self.config.provider}-{self.precision}"

    def _load_impl(self) -> None:
        import onnxruntime as ort

        from optcli.passes.ort_optimizer import ort_level

        _, path = self._artifact()
        specs, dims = self._extra("inputs"), self._extra("dims")
        work = Path(self.context.extras.get("work_dir") or tempfile.mkdtemp(prefix="optcli-"))
        requested = PROVIDERS[self.config.provider]
        chain: list[Any] = [(PROVIDERS["cuda"], cuda_options(self.config)), CPU]
        if self.config.provider == "tensorrt":  # CUDA EP after it takes what TensorRT rejects (ORT docs)
            trt = trt_options(self.config, specs, dims, work / "ort_tensorrt_cache", self.precision)
            for key in ("trt_engine_cache_path", "trt_timing_cache_path"):
                if key in trt:
                    Path(trt[key]).mkdir(parents=True, exist_ok=True)
            chain.insert(0, (requested, trt))
        self._options = {name: opts for name, opts in chain[:-1]}
        (work / "ort_profile").mkdir(parents=True, exist_ok=True)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort_level(self.effective_level)
        options.log_severity_level = 3
        options.enable_profiling = True  # stopped by end_profiling() below, before any timed run
        options.profile_file_prefix = str(work / "ort_profile" / re.sub(r"[^A-Za-z0-9_.-]+", "_", self.label))
        try:  # enable_fallback=0: a provider that throws fails here instead of retrying on CPU
            session = ort.InferenceSession(str(path), options, providers=chain, enable_fallback=0)
        except Exception as exc:
            raise self._fallback(f"{requested} failed to start: {str(exc).strip()[:500]}") from exc
        session.disable_fallback()  # a failing run must not be retried on CPU either
        self._session, self._active = session, list(session.get_providers())
        self._input_names = [i.name for i in session.get_inputs()]
        self._output_names = [o.name for o in session.get_outputs()]
        if problem := fallback_problem(requested, self._active, None, self.config.max_cpu_share):
            raise self._fallback(problem)
        types = {s.name: NUMPY_DTYPES.get(s.dtype, np.dtype(np.float32)) for s in specs}
        feeds = {s.name: np.zeros(shape_range(s, dims).opt, types[s.name]) for s in specs}
        try:
            for _ in range(2):
                session.run(None, {name: feeds[name] for name in self._input_names})
        except Exception as exc:
            raise StageError(f"build: '{self.label}' failed its first run: {str(exc).strip()[:500]}") from exc
        self._profile = Path(session.end_profiling())
        self._placement = node_placement(json.loads(self._profile.read_text()))
        if problem := fallback_problem(requested, self._active, self._placement, self.config.max_cpu_share):
            raise self._fallback(problem)

    def _fallback(self, problem: str) -> MissingDependencyError:
        return MissingDependencyError(
            f"build: engine '{self.label}' is not running on the GPU: {problem}",
            hint=f"check CUDA/cuDNN/TensorRT libraries against the onnxruntime-gpu requirements; {INSTALL}",
        )

    def _bind_impl(self, feeds: dict[str, np.ndarray]) -> Any:
        if not self.config.io_binding:
            return super()._bind_impl(feeds)
        import onnxruntime as ort

        binding, device = self._session.io_binding(), self.config.device_id
        values = [
            ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(feeds[name]), "cuda", device)
            for name in self._input_names
        ]
        for name, value in zip(self._input_names, values):
            binding.bind_ortvalue_input(name, value)
        for name in self._output_names:
            binding.bind_output(name, "cuda", device)
        return _Bound(binding, values)

    def _run_bound_impl(self, bound: Any) -> None:
        # Run waits for the provider's stream unless the run option disable_synchronize_execution_providers
        # is "1", so a returned run is finished: synchronize() has nothing left to wait for.
        if isinstance(bound, _Bound):
            self._session.run_with_iobinding(bound.binding)
        else:
            self._session.run(None, bound)

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        name, path = self._artifact()
        placement = self._placement
        return {
            **Engine.describe(self),
            "runtime": f"onnxruntime {ort.__version__}",
            "provider": PROVIDERS[self.config.provider],
            "active_providers": self._active,
            "artifact": name,
            "path": str(path),
            "graph_optimization": self.effective_level,
            "io_binding": self.config.io_binding,
            "provider_options": self._options,
            "nodes_per_provider": placement.nodes,
            "time_share": {p: round(placement.share(p), 3) for p in placement.time_us},
            "profile": str(self._profile),
        }
