"""A FAKE `tensorrt` module for tests. It is NOT TensorRT and proves nothing about real TensorRT.

It is a stand-in that records calls and implements only the names optcli's tensorrt backend uses, with
TensorRT's Python spellings (checked against NVIDIA/TensorRT python/src for 10.x and 11.x). It "builds"
a JSON blob describing the network it was given, "runs" nothing, and returns canned inspector JSON.
Enum values are deliberately arbitrary (TensorRT renumbered enums in 11): code must use names.

    fake = new_fake_tensorrt("11.1.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import onnx

FIXTURES = Path(__file__).parent
PLAN_MAGIC = "fake-tensorrt-plan"


def _enum(name: str, members: list[str], start: int) -> type[enum.IntEnum]:
    return enum.IntEnum(name, {m: start + i for i, m in enumerate(members)})


def new_fake_tensorrt(version: str = "10.9.0.34") -> ModuleType:
    """A fresh fake module; knobs: parse_errors, build_fails, foreign_timing_cache, no_device,
    inspector_json."""
    v11 = version.startswith("11")
    trt = ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []  # (what, details) in call order
    trt.parse_errors = []  # [(node index, node name, operator, description)]
    trt.build_fails = False
    trt.foreign_timing_cache = False
    trt.no_device = False  # Builder/Runtime fail as the real bindings do when CUDA cannot initialise
    trt.inspector_json = (FIXTURES / ("inspector_11x.json" if v11 else "inspector_10x.json")).read_text()

    start = 5 if v11 else 0  # arbitrary, different per "version"
    trt.NetworkDefinitionCreationFlag = _enum(
        "NetworkDefinitionCreationFlag",
        ["STRONGLY_TYPED"] if v11 else ["EXPLICIT_BATCH", "STRONGLY_TYPED"],
        start,
    )
    precision_flags = [] if v11 else ["FP16", "BF16", "INT8", "FP8"]  # removed in 11
    trt.BuilderFlag = _enum("BuilderFlag", ["DEBUG", "TF32", "REFIT", *precision_flags], start)
    trt.MemoryPoolType = _enum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"], start)
    trt.ProfilingVerbosity = _enum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"], start)
    trt.HardwareCompatibilityLevel = _enum("HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS"], start)
    trt.TensorIOMode = _enum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start)
    trt.DataType = _enum(
        "DataType", ["FLOAT", "HALF", "BF16", "INT8", "INT32", "INT64", "BOOL", "FP8"], start
    )
    trt.LayerInformationFormat = _enum("LayerInformationFormat", ["ONELINE", "JSON"], start)
    severity = _enum("Severity", ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"], start)

    def record(what: str, **details: Any) -> None:
        trt.calls.append((what, details))

    class ILogger:
        Severity = severity
        INTERNAL_ERROR, ERROR, WARNING = severity.INTERNAL_ERROR, severity.ERROR, severity.WARNING

        def __init__(self) -> None:
            pass

        def log(self, severity: Any, msg: str) -> None:
            pass

    class Logger(ILogger):
        def __init__(self, min_severity: Any = severity.WARNING) -> None:
            self.min_severity = min_severity

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self.flags, self.inputs, self.outputs = flags, [], []

        @property
        def num_inputs(self) -> int:
            return len(self.inputs)

        def get_input(self, index: int) -> Any:
            return self.inputs[index]

    def _dims(value_info: Any) -> tuple[list[int], list[str | None]]:
        dims = value_info.type.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else -1 for d in dims], [
            d.dim_param or None for d in dims
        ]

    class ParserError:
        def __init__(self, node: int, name: str, op: str, desc: str) -> None:
            self._v = (node, name, op, desc)

        def node(self) -> int:
            return self._v[0]

        def node_name(self) -> str:
            return self._v[1]

        def node_operator(self) -> str:
            return self._v[2]

        def desc(self) -> str:
            return self._v[3]

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            self.network, self.errors = network, []

        def parse_from_file(self, model: str) -> bool:
            record("parse_from_file", path=model)
            if trt.parse_errors:
                self.errors = [ParserError(*e) for e in trt.parse_errors]
                return False
            graph = onnx.load(model, load_external_data=False).graph
            weights = {i.name for i in graph.initializer}
            for vi in graph.input:
                if vi.name not in weights:
                    shape, params = _dims(vi)
                    self.network.inputs.append(SimpleNamespace(name=vi.name, shape=shape, params=params))
            for vi in graph.output:
                shape, params = _dims(vi)
                self.network.outputs.append(SimpleNamespace(name=vi.name, shape=shape, params=params))
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> ParserError:
            return self.errors[index]

    class ITimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return self.data

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, list[list[int]]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
            shapes = [list(min), list(opt), list(max)]
            if any(not lo <= op <= hi for lo, op, hi in zip(*shapes)):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            self.shapes[input] = shapes

    class IBuilderConfig:
        def __init__(self) -> None:
            self.pools: dict[str, int] = {}
            self.flags: list[str] = []
            self.profiles: list[IOptimizationProfile] = []
            self.builder_optimization_level = 3
            self.profiling_verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY
            self.hardware_compatibility_level = trt.HardwareCompatibilityLevel.NONE
            self.cache: ITimingCache | None = None

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            self.pools[pool.name] = pool_size

        def set_flag(self, flag: Any) -> None:
            self.flags.append(flag.name)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: Any) -> ITimingCache:
            return ITimingCache(memoryview(serialized_timing_cache).tobytes())

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            if trt.foreign_timing_cache and cache.data and not ignore_mismatch:
                return False
            self.cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self.cache

    def _factory_check(logger: Any) -> None:
        if trt.no_device:
            logger.log(severity.ERROR, "fake: CUDA initialization failure with error: 100")
            raise TypeError("pybind11::init(): factory function returned nullptr")

    class Builder:
        def __init__(self, logger: Any) -> None:
            _factory_check(logger)
            self.logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            record("create_network", flags=flags)
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(
            self, network: INetworkDefinition, config: IBuilderConfig
        ) -> bytes | None:
            record("build_serialized_network", config=config, network=network)
            profile = config.profiles[0].shapes if config.profiles else {}
            unprofiled = [t.name for t in network.inputs if min(t.shape) < 0 and t.name not in profile]
            if trt.build_fails or unprofiled:
                self.logger.log(severity.ERROR, f"fake build failure (inputs without profile: {unprofiled})")
                return None
            if config.cache is not None:  # a real build adds tactic timings to the cache
                config.cache = ITimingCache(config.cache.data + b"fake-timing;")
            io = {
                "inputs": [[t.name, profile.get(t.name, [t.shape] * 3), t.params] for t in network.inputs],
                "outputs": [[t.name, t.shape, t.params] for t in network.outputs],
            }
            return json.dumps({"magic": PLAN_MAGIC, "version": trt.__version__, **io}).encode()

    class IExecutionContext:
        def __init__(self, engine: Any) -> None:
            self.engine, self.shapes, self.addresses = engine, {}, {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            low, _, high = self.engine.get_tensor_profile_shape(name, 0)
            ok = len(shape) == len(low) and all(lo <= s <= hi for lo, s, hi in zip(low, shape, high))
            if ok:
                self.shapes[name] = tuple(shape)
            return ok

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name in self.shapes:
                return self.shapes[name]
            sizes = {}
            for input_name, _, params in self.engine.plan["inputs"]:
                for axis, param in enumerate(params):
                    if param and input_name in self.shapes:
                        sizes[param] = self.shapes[input_name][axis]
            _, shape, params = next(o for o in self.engine.plan["outputs"] if o[0] == name)
            return tuple(d if d >= 0 else sizes.get(p, -1) for d, p in zip(shape, params))

        def set_tensor_address(self, name: str, memory: int) -> bool:
            self.addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            record("execute_async_v3", stream=stream_handle)
            return True

    class EngineInspector:
        def __init__(self) -> None:
            self.execution_context = None

        def get_engine_information(self, format: Any) -> str:
            record("get_engine_information", format=format.name, context=self.execution_context)
            return trt.inspector_json

    class ICudaEngine:
        def __init__(self, plan: dict) -> None:
            self.plan = plan
            self.names = [i[0] for i in plan["inputs"]] + [o[0] for o in plan["outputs"]]

        @property
        def num_io_tensors(self) -> int:
            return len(self.names)

        def get_tensor_name(self, index: int) -> str:
            return self.names[index]

        def get_tensor_mode(self, name: str) -> Any:
            inputs = [i[0] for i in self.plan["inputs"]]
            return trt.TensorIOMode.INPUT if name in inputs else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return trt.DataType.FLOAT

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[list[int]]:
            return next(i[1] for i in self.plan["inputs"] if i[0] == name)

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

        def create_engine_inspector(self) -> EngineInspector:
            return EngineInspector()

    class Runtime:
        def __init__(self, logger: Any) -> None:
            _factory_check(logger)
            self.logger = logger

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            record("deserialize_cuda_engine")
            try:
                plan = json.loads(memoryview(serialized_engine).tobytes())
            except ValueError:
                plan = {}
            if plan.get("magic") != PLAN_MAGIC or plan.get("version") != trt.__version__:
                self.logger.log(severity.ERROR, "fake: serialization assertion failed (version/magic)")
                return None
            return ICudaEngine(plan)

    # Every class under TensorRT's own name: tests/test_trt_conformance.py checks each against the real one.
    for cls in (
        ILogger, Logger, INetworkDefinition, ParserError, OnnxParser, ITimingCache, IOptimizationProfile,
        IBuilderConfig, Builder, IExecutionContext, EngineInspector, ICudaEngine, Runtime,
    ):  # fmt: skip
        setattr(trt, cls.__name__, cls)
    return trt


def count(trt: ModuleType, what: str) -> int:
    return sum(1 for name, _ in trt.calls if name == what)


def last(trt: ModuleType, what: str) -> dict[str, Any]:
    return [details for name, details in trt.calls if name == what][-1]
