"""TensorRT backend logic, tested against a FAKE `tensorrt` module (tests/fakes/fake_tensorrt.py).

The fake records calls and returns canned data; passing here shows our build/cache/inspect/shape logic
is consistent with TensorRT's documented Python API names, not that it works on real TensorRT or a GPU.
"""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from fakes.fake_tensorrt import FIXTURES, count, last, new_fake_tensorrt
from onnx import TensorProto, helper, numpy_helper

from optcli.backends.base import EngineContext
from optcli.backends.tensorrt import TensorRTConfig, TensorRTEngine, compat
from optcli.backends.tensorrt.build import (
    BuildOptions,
    build_plan,
    merge_dims,
    onnx_digest,
    plan_cache_key,
    profile_shapes,
)
from optcli.backends.tensorrt.compat import GpuInfo
from optcli.backends.tensorrt.inspector import PrecisionSummary, higher_precision_warning, summarize
from optcli.backends.tensorrt.runtime import PlanSession
from optcli.errors import MissingDependencyError, StageError, UserInputError
from optcli.specs import DimRange, InputSpec

ADA = GpuInfo("NVIDIA L4", (8, 9))
AMPERE = GpuInfo("NVIDIA A10G", (8, 6))


def write_onnx(path: Path, *, out_dim: str | None = "batch") -> Path:
    """x[batch, 16] @ W[16, 4] -> y[batch, 4]; a real (tiny) ONNX file for the fake parser to read."""
    weight = numpy_helper.from_array(np.ones((16, 4), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [out_dim, 4])],
        [weight],
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.fixture
def fake(monkeypatch):
    module = new_fake_tensorrt("10.9.0.34")
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(compat, "current_gpu", lambda: ADA)
    return module


def use_version(monkeypatch, version: str):
    module = new_fake_tensorrt(version)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


def make_engine(tmp_path: Path, precision: str = "fp32", **options) -> TensorRTEngine:
    onnx_path = tmp_path / "model.onnx"
    if not onnx_path.exists():
        write_onnx(onnx_path)
    context = EngineContext(
        artifacts={"exported": onnx_path},
        precisions={"exported": precision},
        torch_model=lambda: None,
        input_names=["x"],
        output_names=["y"],
        extras={
            "inputs": [InputSpec(name="x", shape=["batch", 16])],
            "dims": {"batch": DimRange(min=1, opt=2, max=8)},
            "work_dir": tmp_path,
        },
    )
    return TensorRTEngine(TensorRTConfig(**options), context)


# -- pure functions ----------------------------------------------------------------------------
def test_profile_shapes_from_input_specs_and_dims():
    inputs = [
        InputSpec(name="tokens", shape=["batch", "seq"], dtype="int64"),
        InputSpec(name="image", shape=["batch", 3, 224, 224]),
    ]
    dims = {"batch": DimRange(min=1, opt=8, max=32), "seq": DimRange(min=16, max=128)}
    assert profile_shapes(inputs, dims) == {
        "tokens": ((1, 16), (8, 16), (32, 128)),  # seq has no opt: opt = min
        "image": ((1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224)),
    }
    with pytest.raises(UserInputError, match="seq"):
        profile_shapes(inputs, {"batch": DimRange()})


def test_profile_overrides_replace_dims_and_reject_unknown_names():
    dims = {"batch": DimRange(min=1, max=64)}
    merged = merge_dims(dims, {"batch": DimRange(min=2, opt=4, max=8)})
    assert (merged["batch"].min, merged["batch"].typical, merged["batch"].max) == (2, 4, 8)
    with pytest.raises(UserInputError, match="bacth"):
        merge_dims(dims, {"bacth": DimRange()})


def test_plan_cache_key_changes_with_gpu_version_onnx_and_options():
    options = BuildOptions(precision="int8", shapes={"x": ((1, 16), (2, 16), (8, 16))})
    key = plan_cache_key(ADA, "10.9.0.34", "abc", options)
    assert key.startswith("sm89-trt10.9-")
    assert key == plan_cache_key(ADA, "10.9.0.34", "abc", options)
    others = [
        plan_cache_key(GpuInfo("NVIDIA RTX 4090", (8, 9)), "10.9.0.34", "abc", options),
        plan_cache_key(AMPERE, "10.9.0.34", "abc", options),
        plan_cache_key(ADA, "10.9.0.35", "abc", options),
        plan_cache_key(ADA, "11.1.0", "abc", options),
        plan_cache_key(ADA, "10.9.0.34", "abd", options),
        plan_cache_key(ADA, "10.9.0.34", "abc", BuildOptions(precision="int8", optimization_level=5)),
        plan_cache_key(ADA, "10.9.0.34", "abc", BuildOptions(precision="int8", shapes={})),
    ]
    assert len({key, *others}) == len(others) + 1


def test_onnx_digest_covers_external_data(tmp_path):
    path = write_onnx(tmp_path / "m.onnx")
    before = onnx_digest(path)
    (tmp_path / "m.onnx.data").write_bytes(b"weights")
    assert onnx_digest(path) != before


# -- inspector ---------------------------------------------------------------------------------
def test_inspector_parses_10x_format_datatype_strings():
    summary = summarize((FIXTURES / "inspector_10x.json").read_text())
    assert summary.counts == {"FP32": 2, "INT64": 1, "INT8": 3}
    assert (summary.layers, summary.quantized, summary.compute) == (6, 3, 5)
    assert higher_precision_warning("trt-int8", "int8", summary) is None


def test_inspector_parses_11x_separate_fields_and_warns_on_unquantized_engine():
    summary = summarize(json.loads((FIXTURES / "inspector_11x.json").read_text()))
    assert summary.counts == {"FP16": 4, "FP32": 1, "INT8": 1}
    warning = higher_precision_warning("trt-int8", "int8", summary)
    assert warning and "only 1 of 6" in warning and "4 FP16" in warning and "FP16 build" in warning
    assert higher_precision_warning("trt-fp16", "fp16", summary) is None  # not a quantized artifact


def test_inspector_without_detailed_verbosity_gives_no_counts_and_no_warning():
    summary = summarize('{"Layers": ["conv1 + relu1", "head"], "Bindings": ["x", "y"]}')
    assert (summary.detailed, summary.layers, summary.counts) == (False, 2, {})
    assert higher_precision_warning("e", "int8", summary) is None
    assert higher_precision_warning("e", "int8", PrecisionSummary()) is None


# -- engine: build, cache, errors ----------------------------------------------------------------
def test_build_is_strongly_typed_with_profile_and_reuses_the_plan(fake, tmp_path):
    engine = make_engine(tmp_path, workspace_mb=512, optimization_level=4).load()
    build = last(fake, "build_serialized_network")
    assert last(fake, "create_network")["flags"] == 1 << int(
        fake.NetworkDefinitionCreationFlag.STRONGLY_TYPED
    )
    config = build["config"]
    assert config.pools == {"WORKSPACE": 512 << 20}
    assert config.builder_optimization_level == 4
    assert config.profiling_verbosity == fake.ProfilingVerbosity.DETAILED
    assert config.flags == []  # no precision flags: precision comes from the graph
    assert config.profiles[0].shapes == {"x": [[1, 16], [2, 16], [8, 16]]}
    info = engine.describe()
    assert info["plan_reused"] is False and Path(info["plan"]).exists()
    assert info["runtime"] == "tensorrt 10.9.0.34" and info["device"] == "NVIDIA L4"
    assert info["layer_precisions"] == {"FP32": 2, "INT64": 1, "INT8": 3}
    engine.close()

    again = make_engine(tmp_path, workspace_mb=512, optimization_level=4).load()
    assert count(fake, "build_serialized_network") == 1
    assert again.describe()["plan_reused"] is True and again.describe()["plan"] == info["plan"]
    make_engine(tmp_path, workspace_mb=512, optimization_level=2).load()  # new options, new plan
    assert count(fake, "build_serialized_network") == 2


def test_new_tensorrt_version_builds_a_new_plan(fake, tmp_path, monkeypatch):
    first = make_engine(tmp_path).load().describe()["plan"]
    use_version(monkeypatch, "10.9.0.35")
    second = make_engine(tmp_path).load().describe()["plan"]
    assert first != second and Path(first).exists() and Path(second).exists()


def test_stale_plan_with_the_same_key_is_rebuilt(fake, tmp_path):
    plan = Path(make_engine(tmp_path).load().describe()["plan"])
    plan.write_bytes(b"truncated")
    engine = make_engine(tmp_path).load()
    assert count(fake, "build_serialized_network") == 2 and engine.describe()["plan_reused"] is False


def test_timing_cache_is_read_and_written_back(fake, tmp_path):
    make_engine(tmp_path).load()
    cache = tmp_path / "trt-timing.cache"
    assert cache.read_bytes() == b"fake-timing;"
    make_engine(tmp_path, optimization_level=5).load()  # another build starts from the saved cache
    assert cache.read_bytes() == b"fake-timing;fake-timing;"
    make_engine(tmp_path, optimization_level=1, timing_cache="caches/own.cache").load()
    assert (tmp_path / "caches" / "own.cache").read_bytes() == b"fake-timing;"  # relative to the run folder


def test_foreign_timing_cache_is_replaced_not_fatal(fake, tmp_path):
    (tmp_path / "trt-timing.cache").write_bytes(b"from-another-gpu;")
    fake.foreign_timing_cache = True
    make_engine(tmp_path).load()
    assert (tmp_path / "trt-timing.cache").read_bytes() == b"fake-timing;"


def test_parser_errors_become_a_stage_error_and_nothing_is_cached(fake, tmp_path):
    fake.parse_errors = [(3, "conv_7", "Conv", "Unsupported: 5-D asymmetric padding")]
    with pytest.raises(StageError, match=r"rejected model\.onnx") as info:
        make_engine(tmp_path).load()
    assert "node 3 'conv_7' (Conv): Unsupported: 5-D asymmetric padding" in str(info.value)
    assert not list(tmp_path.glob("*.plan"))


def test_build_failure_is_not_cached(fake, tmp_path):
    fake.build_fails = True
    with pytest.raises(StageError, match=r"(?s)could not build.*fake build failure"):
        make_engine(tmp_path).load()
    assert not list(tmp_path.glob("*.plan")) and not (tmp_path / "trt-timing.cache").exists()
    fake.build_fails = False
    make_engine(tmp_path).load()
    assert count(fake, "build_serialized_network") == 2 and len(list(tmp_path.glob("*.plan"))) == 1


def test_dynamic_input_without_recipe_shapes_is_a_clear_error(fake, tmp_path):
    engine = make_engine(tmp_path)
    engine.context.extras.clear()
    with pytest.raises(StageError, match=r"'x' has dynamic dims .* no shape range"):
        engine.load()


# -- availability --------------------------------------------------------------------------------
def test_unavailable_without_tensorrt_gives_the_install_hint(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails, as on this machine
    missing = TensorRTEngine.unavailable(TensorRTConfig())
    assert missing and "tensorrt" in missing.reason
    assert "pip install tensorrt --extra-index-url https://pypi.nvidia.com" in missing.fix
    with pytest.raises(MissingDependencyError) as info:
        make_engine(tmp_path).load()
    assert info.value.exit_code == 3 and "pypi.nvidia.com" in str(info.value)


def test_unavailable_without_a_gpu(fake, monkeypatch):
    monkeypatch.setattr(compat, "current_gpu", lambda: None)
    assert "no CUDA device" in TensorRTEngine.unavailable(TensorRTConfig()).reason
    assert TensorRTEngine.unavailable(TensorRTConfig()) is not None


def test_fp8_needs_compute_capability_8_9(fake, monkeypatch, tmp_path):
    assert TensorRTEngine.unavailable(TensorRTConfig(), precision="fp8") is None  # Ada
    monkeypatch.setattr(compat, "current_gpu", lambda: AMPERE)
    missing = TensorRTEngine.unavailable(TensorRTConfig(), precision="fp8")
    assert missing and "8.9" in missing.reason and "A10G" in missing.reason
    assert TensorRTEngine.unavailable(TensorRTConfig(), precision="int8") is None
    with pytest.raises(MissingDependencyError, match=r"8\.9") as info:
        make_engine(tmp_path, precision="fp8").load()
    assert info.value.exit_code == 3 and count(fake, "build_serialized_network") == 0


def test_legacy_precision_flags_refused_on_tensorrt_11(fake, monkeypatch, tmp_path):
    use_version(monkeypatch, "11.1.0")
    config = TensorRTConfig(legacy_precision_flags=True)
    missing = TensorRTEngine.unavailable(config)
    assert missing and "11.1.0" in missing.reason and "strongly typed" in missing.reason
    with pytest.raises(MissingDependencyError, match="legacy_precision_flags"):
        make_engine(tmp_path, precision="int8", legacy_precision_flags=True).load()
    assert TensorRTEngine.unavailable(TensorRTConfig()) is None  # the default is fine on 11


def test_legacy_precision_flags_on_10x_build_weakly_typed(fake, tmp_path):
    make_engine(tmp_path, precision="int8", legacy_precision_flags=True).load()
    assert last(fake, "create_network")["flags"] == 0
    assert last(fake, "build_serialized_network")["config"].flags == ["FP16", "INT8"]


def test_legacy_flags_missing_from_this_10x_builder_flag_enum_are_refused(fake, tmp_path):
    """Decided on the module's BuilderFlag members, not only the version: a 10.x without FP8 refuses fp8."""
    fake.BuilderFlag = enum.IntEnum("BuilderFlag", {"FP16": 0, "INT8": 1})
    with pytest.raises(MissingDependencyError, match="has no BuilderFlag FP8") as info:
        make_engine(tmp_path, precision="fp8", legacy_precision_flags=True).load()
    assert info.value.exit_code == 3 and count(fake, "build_serialized_network") == 0


def test_builder_tensorrt_cannot_create_is_a_missing_device_not_a_crash(fake, tmp_path):
    """TensorRT returns NULL when CUDA cannot initialise; the bindings raise TypeError (seen with the real
    10.x/11.x bindings in test_trt_conformance.py). That must be exit 3 with TensorRT's own message."""
    fake.no_device = True
    with pytest.raises(
        MissingDependencyError, match=r"could not create a Builder: .*CUDA initialization"
    ) as info:
        make_engine(tmp_path).load()
    assert info.value.exit_code == 3 and count(fake, "build_serialized_network") == 0


def test_quantized_engine_reports_layer_precisions_and_warning_on_11x(fake, monkeypatch, tmp_path):
    fake11 = use_version(monkeypatch, "11.1.0")
    info = make_engine(tmp_path, precision="int8").load().describe()
    assert info["layer_precisions"] == {"FP16": 4, "FP32": 1, "INT8": 1}
    assert "tensorrt-int8" in info["precision_warning"]
    assert last(fake11, "get_engine_information")["context"] is not None  # shapes set before inspecting


# -- runtime logic that needs no GPU -------------------------------------------------------------
def session_for(fake, tmp_path: Path, out_dim: str | None = "batch") -> PlanSession:
    path = write_onnx(tmp_path / "m.onnx", out_dim=out_dim)
    shapes = {"x": ((1, 16), (2, 16), (8, 16))}
    logger = compat.shared_logger(fake)
    return PlanSession(
        fake, logger, build_plan(fake, logger, path, BuildOptions("fp32", shapes=shapes), None)
    )


def test_input_shape_outside_the_profile_names_input_and_range(fake, tmp_path):
    session = session_for(fake, tmp_path)
    assert session.inputs == ["x"] and session.outputs == ["y"]
    assert session.set_input_shapes({"x": (4, 16)}) == {"y": (4, 4)}
    with pytest.raises(
        StageError, match=r"'x' shape \(64, 16\).*min \(1, 16\), opt \(2, 16\), max \(8, 16\)"
    ):
        session.set_input_shapes({"x": (64, 16)})
    with pytest.raises(StageError, match="no data for engine input 'x'"):
        session.set_input_shapes({"tokens": (1, 16)})


def test_data_dependent_output_shape_is_refused(fake, tmp_path):
    session = session_for(fake, tmp_path, out_dim="nonzero_count")
    with pytest.raises(StageError, match="data-dependent"):
        session.set_input_shapes({"x": (2, 16)})


def test_plan_from_another_tensorrt_version_is_refused(fake, tmp_path, monkeypatch):
    path = write_onnx(tmp_path / "m.onnx")
    options = BuildOptions("fp32", shapes={"x": ((1, 16),) * 3})
    blob = build_plan(fake, compat.shared_logger(fake), path, options, None)
    newer = use_version(monkeypatch, "11.1.0")
    with pytest.raises(StageError, match=r"could not be deserialized.*version"):
        PlanSession(newer, compat.shared_logger(newer), blob)


@pytest.mark.skip(reason="bind/run/CUDA-graph paths need real TensorRT and a CUDA GPU; not available here")
def test_device_run_matches_numpy():  # pragma: no cover - documents what a GPU machine should check
    pass
