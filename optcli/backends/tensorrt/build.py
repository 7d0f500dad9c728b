"""ONNX -> serialized TensorRT plan: strongly typed network, one optimization profile, timing cache.

API facts (NVIDIA/TensorRT python/src/infer/pyCore.cpp, parsers/pyOnnx.cpp, tags v10.0.0..v11.1):
Builder/create_network/create_builder_config/build_serialized_network, OnnxParser.parse_from_file with
num_errors/get_error(i).desc()/node_name(), IBuilderConfig.set_memory_pool_limit, builder_optimization_level,
profiling_verbosity, hardware_compatibility_level, create/set/get_timing_cache. BuilderFlag.FP16/INT8/FP8
exist in 10.x and are gone in 11.x; NetworkDefinitionCreationFlag.STRONGLY_TYPED is in both (a no-op in 11).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from optcli.atomic import atomic_write
from optcli.backends.shapes import shape_range
from optcli.backends.tensorrt.compat import LEGACY_FLAGS, GpuInfo, check_legacy_flags, create
from optcli.errors import StageError, UserInputError
from optcli.specs import DimRange, InputSpec

PLAN_FORMAT = 1  # bump when build logic changes so old cached plans are not reused
Shape = tuple[int, ...]
ProfileShapes = dict[str, tuple[Shape, Shape, Shape]]


@dataclass(frozen=True)
class BuildOptions:
    """Everything that changes the plan's content; all of it goes into the cache key."""

    precision: str
    workspace_mb: int | None = None
    optimization_level: int = 3
    hardware_compatibility: str = "none"
    legacy_precision_flags: bool = False
    shapes: ProfileShapes = field(default_factory=dict)


def merge_dims(dims: dict[str, DimRange], overrides: dict[str, DimRange] | None) -> dict[str, DimRange]:
    """model.dims with this engine's `profile:` overrides; an unknown name is a typo, not a new dim."""
    unknown = sorted(set(overrides or {}) - set(dims))
    if unknown:
        raise UserInputError(
            f"build: tensorrt profile overrides dim(s) {unknown}, which model.dims does not declare "
            f"(declared: {sorted(dims)})"
        )
    return {**dims, **(overrides or {})}


def profile_shapes(inputs: list[InputSpec], dims: dict[str, DimRange]) -> ProfileShapes:
    """min/opt/max shape of every input: static dims stay, named dims take their DimRange bounds."""
    return {spec.name: tuple(shape_range(spec, dims)) for spec in inputs}


def onnx_digest(path: Path) -> str:
    """sha256 of the ONNX file and its external-data file (weights may live only there)."""
    digest = hashlib.sha256()
    for part in (path, path.with_name(path.name + ".data")):
        if part.exists():
            with open(part, "rb") as handle:
                for chunk in iter(lambda handle=handle: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def plan_cache_key(gpu: GpuInfo, trt_version: str, digest: str, options: BuildOptions) -> str:
    """Plans only load on the GPU model and TensorRT version that built them: key on both, plus the
    ONNX content and build options. Readable prefix for humans, hash for everything."""
    payload = {
        "format": PLAN_FORMAT,
        "gpu": gpu.name,
        "capability": list(gpu.capability),
        "tensorrt": trt_version,
        "onnx": digest,
        "options": asdict(options),
    }
    blob = json.dumps(payload, sort_keys=True, default=list).encode()
    short_version = ".".join(trt_version.split(".")[:2])
    return f"{gpu.sm}-trt{short_version}-{hashlib.sha256(blob).hexdigest()[:16]}"


def to_bytes(buffer: Any) -> bytes:
    """IHostMemory exposes the buffer protocol; copy it out before TensorRT frees it (Polygraphy's
    backend/trt/loader.py does the same with bytes(engine.serialize()))."""
    return bytes(buffer)


def network_flags(trt: ModuleType, legacy: bool) -> int:
    if legacy:
        return 0  # weakly typed (10.x): builder flags choose precisions; EXPLICIT_BATCH is implied in 10
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)  # 11.x: always strongly typed, the flag may disappear


def parse_onnx(trt: ModuleType, network: Any, logger: Any, path: Path) -> Any:
    parser = trt.OnnxParser(network, logger)
    if parser.parse_from_file(str(path)):
        return parser
    errors = []
    for i in range(parser.num_errors):
        error = parser.get_error(i)
        where = "model" if error.node() < 0 else f"node {error.node()}"
        where += f" '{error.node_name()}'" if error.node_name() else ""
        op = f" ({error.node_operator()})" if error.node_operator() else ""
        errors.append(f"{where}{op}: {error.desc()}")
    detail = "\n  ".join(errors or logger.take() or ["no details reported"])
    raise StageError(f"build: TensorRT's ONNX parser rejected {path.name}:\n  {detail}")


def add_profile(trt: ModuleType, builder: Any, network: Any, config: Any, shapes: ProfileShapes) -> None:
    """One profile covering the recipe's dim ranges; every dynamic network input needs one."""
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        name, dims = tensor.name, tuple(tensor.shape)
        if name not in shapes:
            if any(d < 0 for d in dims):
                raise StageError(
                    f"build: ONNX input '{name}' has dynamic dims {dims} but no shape range: declare it "
                    "in model.inputs (tensorrt needs min/opt/max for every dynamic input)"
                )
            continue
        low, opt, high = shapes[name]
        if len(low) != len(dims):
            raise StageError(
                f"build: input '{name}' has rank {len(dims)} in the ONNX, {len(low)} in the recipe"
            )
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)


def set_legacy_flags(trt: ModuleType, config: Any, precision: str) -> None:
    """TensorRT 10.x weak typing: let the builder pick lower precisions per layer."""
    for name in LEGACY_FLAGS.get(precision, ("FP16",)):
        config.set_flag(getattr(trt.BuilderFlag, name))


def attach_timing_cache(config: Any, path: Path | None) -> Any:
    """Load the timing cache into the config; the returned object must outlive the build."""
    if path is None:
        return None
    cache = config.create_timing_cache(path.read_bytes() if path.exists() else b"")
    # ignore_mismatch=False: a cache from another GPU is refused (returns False), so start a fresh one
    if not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def build_plan(
    trt: ModuleType, logger: Any, onnx_path: Path, options: BuildOptions, timing_cache: Path | None
) -> bytes:
    """Build a serialized plan; raises StageError with TensorRT's messages when it cannot."""
    check_legacy_flags(trt, options.legacy_precision_flags, options.precision)
    builder = create(trt.Builder, logger)
    network = builder.create_network(network_flags(trt, options.legacy_precision_flags))
    parser = parse_onnx(trt, network, logger, onnx_path)  # owns weight memory the network points into
    config = builder.create_builder_config()
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    config.builder_optimization_level = options.optimization_level
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # the inspector shows layer precisions
    if options.hardware_compatibility == "ampere_plus":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if options.legacy_precision_flags:
        set_legacy_flags(trt, config, options.precision)
    add_profile(trt, builder, network, config, options.shapes)
    cache = attach_timing_cache(config, timing_cache)
    logger.take()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        detail = "\n  ".join(logger.take()[-10:] or ["TensorRT gave no error message"])
        raise StageError(f"build: TensorRT could not build an engine from {onnx_path.name}:\n  {detail}")
    if timing_cache is not None:
        atomic_write(timing_cache, to_bytes(config.get_timing_cache().serialize()))
    del parser, cache  # both had to live until the build finished
    return to_bytes(plan)
