"""GPU engines (torch_tensorrt, onnxruntime_gpu) on a CPU-only machine.

Pure functions are tested directly. Engine code paths run against FAKES (tests/fakes): a fake
torch_tensorrt, a fake ModelOpt and a fake ORT InferenceSession. They check what optcli asks those
libraries to do, not how the real libraries behave on a GPU.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from fakes import fake_modelopt, fake_torch_tensorrt
from pydantic import ValidationError

from optcli.backends import torch_tensorrt_engine as tte
from optcli.backends.base import EngineContext
from optcli.backends.onnxruntime_gpu import (
    CPU,
    INSTALL,
    OnnxRuntimeGpuConfig,
    OnnxRuntimeGpuEngine,
    Placement,
    fallback_problem,
    node_placement,
    trt_options,
    trt_profile_shapes,
)
from optcli.backends.shapes import shape_range, varying_axes
from optcli.backends.torch_tensorrt_engine import (
    TorchTensorRTConfig,
    TorchTensorRTEngine,
    compile_settings,
    version_tuple,
)
from optcli.errors import MissingDependencyError, UserInputError
from optcli.specs import DimRange, InputSpec

FIXTURE = Path(__file__).parent / "fakes" / "ort_profile_tensorrt.json"
TRT, CUDA = "TensorrtExecutionProvider", "CUDAExecutionProvider"
SPECS = [
    InputSpec(name="tokens", shape=["batch", "seq", 8]),
    InputSpec(name="mask", shape=["batch", "seq"], dtype="int64"),
]
DIMS = {"batch": DimRange(min=1, opt=4, max=32), "seq": DimRange(min=16, max=128)}


class TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(8, 4)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.proj(tokens) * mask.unsqueeze(-1).to(tokens.dtype)).mean(1)


def _context(tmp_path: Path, model: torch.nn.Module | None = None, **extras) -> EngineContext:
    model = model or TwoInputs().eval()
    return EngineContext(
        artifacts={"exported": tmp_path / "model.onnx"},
        precisions={"exported": "int8"},
        torch_model=lambda: model,
        input_names=[s.name for s in SPECS],
        output_names=["out"],
        extras={"inputs": SPECS, "dims": DIMS, "work_dir": tmp_path, **extras},
    )


def _feeds(batch: int = 3, seq: int = 20) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "tokens": rng.standard_normal((batch, seq, 8)).astype(np.float32),
        "mask": np.ones((batch, seq), np.int64),
    }


# -- shapes -----------------------------------------------------------------------------------


def test_shape_range_static_and_named_dims():
    assert shape_range(SPECS[0], DIMS) == ((1, 16, 8), (4, 16, 8), (32, 128, 8))  # seq opt defaults to min
    assert varying_axes(SPECS[1], DIMS) == {0: "batch", 1: "seq"}
    fixed = {"batch": DimRange(min=2, max=2), "seq": DimRange(min=16, max=128)}
    assert varying_axes(SPECS[0], fixed) == {1: "seq"}  # min == max is not dynamic
    with pytest.raises(UserInputError, match="no range"):
        shape_range(SPECS[0], {"batch": DimRange()})


# -- configs ----------------------------------------------------------------------------------


def test_config_validation():
    assert TorchTensorRTConfig(dtype="float16", autocast=True).autocast
    with pytest.raises(ValidationError, match="autocast needs dtype"):
        TorchTensorRTConfig(autocast=True)
    with pytest.raises(ValidationError):
        TorchTensorRTConfig(optimization_level=6)
    with pytest.raises(ValidationError):
        TorchTensorRTConfig(quantize="int4")
    with pytest.raises(ValidationError, match="provider: tensorrt"):
        OnnxRuntimeGpuConfig(provider="cuda", trt_fp16_enable=True)
    with pytest.raises(ValidationError):
        OnnxRuntimeGpuConfig(provider="rocm")
    with pytest.raises(ValidationError):
        OnnxRuntimeGpuConfig(trt_fp16=True)  # typo: unknown keys are errors


# -- unavailable() ----------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_torch_tensorrt_unavailable_without_cuda_here():
    why = TorchTensorRTEngine.unavailable(TorchTensorRTConfig())
    assert why is not None and "sees no CUDA device" in why.reason and "torch-tensorrt" in why.fix


def test_torch_tensorrt_unavailable_when_import_fails(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # makes `import torch_tensorrt` raise
    why = TorchTensorRTEngine.unavailable(TorchTensorRTConfig())
    assert why is not None and "cannot import torch_tensorrt" in why.reason
    assert why.fix == "pip install torch-tensorrt (matching your torch)"


@pytest.mark.parametrize(("capability", "blocked"), [((8, 6), True), ((8, 9), False), ((9, 0), False)])
def test_torch_tensorrt_fp8_needs_sm89(monkeypatch, capability, blocked):
    """With the FAKE torch_tensorrt and FAKE ModelOpt installed, only the GPU's capability decides."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "FakeGPU")
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake_torch_tensorrt)
    fake_modelopt.install(monkeypatch)
    why = TorchTensorRTEngine.unavailable(TorchTensorRTConfig(quantize="fp8"))
    assert (why is not None) == blocked
    if blocked:
        assert "compute capability >= 8.9" in why.reason and "FakeGPU has 8.6" in why.reason


def test_torch_tensorrt_autocast_needs_2_13(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake_torch_tensorrt)
    monkeypatch.setattr(fake_torch_tensorrt, "__version__", "2.9.0")
    why = TorchTensorRTEngine.unavailable(TorchTensorRTConfig(dtype="float16", autocast=True))
    assert why is not None and ">= 2.13" in why.reason


def test_onnxruntime_gpu_unavailable_on_cpu_only_onnxruntime():
    import onnxruntime as ort

    for provider, name in (("cuda", CUDA), ("tensorrt", TRT)):
        if name in ort.get_available_providers():
            pytest.skip("this onnxruntime has GPU providers")
        why = OnnxRuntimeGpuEngine.unavailable(OnnxRuntimeGpuConfig(provider=provider))
        assert why is not None and name in why.reason and why.fix == INSTALL


# -- torch_tensorrt build with the FAKE module ------------------------------------------------


def test_trace_example_avoids_size_one(fake_trt):
    """torch.export specializes size-1 dims, so the example tensor uses >= 2 where the dim varies."""
    dims = {"batch": DimRange(min=1, max=8), "seq": DimRange(min=1, max=1)}
    (tokens, _) = tte.trt_inputs(fake_trt, SPECS, dims, torch.float32)
    assert tokens.kwargs["opt_shape"] == (1, 1, 8) and tokens.kwargs["torch_tensor"].shape == (2, 1, 8)
    assert tokens.kwargs["shared_dims"] == {0: "batch"}


def test_compile_settings_precision_by_version():
    assert version_tuple("2.13.0+cu130") == (2, 13) and version_tuple("2.14.0a0") == (2, 14)
    fp16 = TorchTensorRTConfig(dtype="float16", workspace_mb=512, optimization_level=5)
    assert compile_settings(fp16, (2, 13)) == {"workspace_size": 512 << 20, "optimization_level": 5}
    auto = compile_settings(TorchTensorRTConfig(dtype="bfloat16", autocast=True), (2, 13))
    assert auto == {"enable_autocast": True, "autocast_low_precision_type": torch.bfloat16}
    old = compile_settings(TorchTensorRTConfig(dtype="float16", quantize="int8"), (2, 12))
    assert old["enabled_precisions"] == {torch.float32, torch.float16, torch.int8}


@pytest.fixture
def fake_trt(monkeypatch):
    """The FAKE torch_tensorrt in sys.modules, and the engine's device set to CPU."""
    fake_torch_tensorrt.reset()
    monkeypatch.setitem(sys.modules, "torch_tensorrt", fake_torch_tensorrt)
    monkeypatch.setattr(tte, "DEVICE", "cpu")
    return fake_torch_tensorrt


def test_torch_tensorrt_builds_fp16_with_profiles_and_saves(fake_trt, tmp_path):
    baseline = TwoInputs().eval()
    engine = TorchTensorRTEngine(TorchTensorRTConfig(dtype="float16"), _context(tmp_path, baseline))
    with engine:
        out = engine.run(_feeds())[0]
        call = fake_trt.last("compile")
        assert call["ir"] == "dynamo" and "enabled_precisions" not in call
        tokens, mask = (i.kwargs for i in call["arg_inputs"])
        assert tokens.pop("torch_tensor").shape == (4, 16, 8)  # the example torch.export traces with
        assert tokens == {
            "name": "tokens",
            "min_shape": (1, 16, 8),
            "opt_shape": (4, 16, 8),
            "max_shape": (32, 128, 8),
            "dtype": torch.float16,
            "shared_dims": {0: "batch", 1: "seq"},
        }
        assert mask["dtype"] == torch.int64 and mask["shared_dims"] == {0: "batch", 1: "seq"}
        assert mask["torch_tensor"].dtype == torch.int64
        compiled = fake_trt.calls[0][1]
        assert compiled is not baseline and compiled.proj.weight.dtype == torch.float16
        assert baseline.proj.weight.dtype == torch.float32  # the baseline is never touched
        saved = fake_trt.last("save")
        assert saved["output_format"] == "exported_program" and Path(saved["file_path"]).is_file()
        assert Path(saved["file_path"]).parent == tmp_path / "torch_tensorrt"
        assert engine.label == "torch_tensorrt-fp16" and engine.describe()["exported_program"]
    with torch.no_grad():
        want = baseline(*(torch.from_numpy(v) for v in _feeds().values())).numpy()
    assert out.dtype == np.float32 and np.allclose(out, want, atol=1e-2)


def test_torch_tensorrt_quantize_calibrates_then_exports_in_torch_mode(fake_trt, monkeypatch, tmp_path):
    """FAKE ModelOpt: quantize() only runs the forward loop; we count batches and export_torch_mode."""
    fake_modelopt.install(monkeypatch)
    context = _context(tmp_path, calibration_batches=lambda: (_feeds(2, 16) for _ in range(10)))
    config = TorchTensorRTConfig(quantize="fp8", calibration_steps=3, save_exported_program=False)
    with TorchTensorRTEngine(config, context) as engine:
        assert engine.precision == "fp8"
        assert fake_modelopt.record == {
            "config": {"fake": "fp8"},
            "forward_passes": 3,
            "export_torch_mode": 1,
        }
        assert [c[0] for c in fake_trt.calls] == ["compile"]
    context.extras.pop("calibration_batches")
    with pytest.raises(UserInputError, match="calibration"):
        TorchTensorRTEngine(TorchTensorRTConfig(quantize="int8"), context).load()


# -- onnxruntime_gpu: options and profiling ----------------------------------------------------


def test_trt_profile_shapes_strings():
    assert trt_profile_shapes(SPECS, DIMS) == {
        "trt_profile_min_shapes": "tokens:1x16x8,mask:1x16",
        "trt_profile_opt_shapes": "tokens:4x16x8,mask:4x16",
        "trt_profile_max_shapes": "tokens:32x128x8,mask:32x128",
    }
    assert trt_profile_shapes([InputSpec(name="x", shape=[1, 3])], {}) == {}
    with pytest.raises(UserInputError, match="separators"):
        trt_profile_shapes([InputSpec(name="a:b", shape=["batch"])], DIMS)


def test_trt_options_dict(tmp_path):
    config = OnnxRuntimeGpuConfig(provider="tensorrt", trt_max_workspace_size=1 << 30, device_id=1)
    options = trt_options(config, SPECS, DIMS, tmp_path / "cache", precision="int8")
    assert {k: v for k, v in options.items() if not k.startswith("trt_profile")} == {
        "device_id": "1",
        "trt_fp16_enable": "False",
        "trt_int8_enable": "True",  # INT8 Q/DQ artifact
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(tmp_path / "cache"),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(tmp_path / "cache"),
        "trt_max_workspace_size": str(1 << 30),
    }
    assert options["trt_profile_max_shapes"] == "tokens:32x128x8,mask:32x128"
    plain = OnnxRuntimeGpuConfig(
        provider="tensorrt",
        trt_fp16_enable=True,
        trt_engine_cache_enable=False,
        trt_timing_cache_enable=False,
        trt_builder_optimization_level=5,
    )
    options = trt_options(plain, SPECS, DIMS, tmp_path, precision="fp32")
    assert options["trt_fp16_enable"] == "True" and options["trt_int8_enable"] == "False"
    assert "trt_engine_cache_path" not in options and "trt_timing_cache_path" not in options
    assert options["trt_builder_optimization_level"] == "5"


def test_node_placement_from_profile_fixture():
    placement = node_placement(json.loads(FIXTURE.read_text()))
    # only the last model_run counts: the first holds a 0.9 s TensorRT engine build
    assert placement.nodes == {TRT: 1, CUDA: 1, CPU: 2}
    assert placement.time_us == {CUDA: 12, TRT: 850, CPU: 38}
    assert placement.share(CPU) == pytest.approx(38 / 900)
    assert Placement(nodes={CPU: 1, CUDA: 3}, time_us={}).share(CPU) == 0.25  # counts when no time


def test_fallback_problem_cases():
    gpu = Placement(nodes={CUDA: 10, CPU: 5}, time_us={CUDA: 900, CPU: 100})
    assert fallback_problem(CUDA, [CUDA, CPU], gpu, 0.5) is None
    assert "did not enable" in fallback_problem(TRT, [CUDA, CPU], gpu, 0.5)
    assert "no node ran on" in fallback_problem(TRT, [TRT, CUDA, CPU], gpu, 0.5)
    cpu_heavy = Placement(nodes={CUDA: 1, CPU: 20}, time_us={CUDA: 10, CPU: 990})
    assert "99% of node time ran on the CPU" in fallback_problem(CUDA, [CUDA, CPU], cpu_heavy, 0.5)


class FakeSession:
    """A FAKE onnxruntime.InferenceSession: reports chosen providers and a canned profile."""

    providers: ClassVar[list[str]] = [CPU]
    profile: ClassVar[Path] = FIXTURE
    created: ClassVar[list[dict]] = []

    def __init__(self, path, options, providers, **kwargs):
        FakeSession.created.append({"providers": providers, **kwargs})
        self.fallback_disabled = False

    def disable_fallback(self):
        self.fallback_disabled = True

    def get_providers(self):
        return list(self.providers)

    def get_inputs(self):
        return [type("Arg", (), {"name": s.name}) for s in SPECS]

    def get_outputs(self):
        return [type("Arg", (), {"name": "out"})]

    def run(self, names, feeds):
        assert feeds["tokens"].shape == (4, 16, 8) and feeds["mask"].dtype == np.int64  # opt shapes
        return [np.zeros((4, 4), np.float32)]

    def end_profiling(self):
        return str(self.profile)


@pytest.fixture
def fake_session(monkeypatch):
    import onnxruntime as ort

    FakeSession.created = []
    monkeypatch.setattr(ort, "InferenceSession", FakeSession)
    return FakeSession


def test_ort_gpu_fails_when_session_silently_runs_on_cpu(fake_session, tmp_path):
    fake_session.providers = [CPU]
    with pytest.raises(MissingDependencyError, match="did not enable CUDAExecutionProvider") as info:
        OnnxRuntimeGpuEngine(OnnxRuntimeGpuConfig(artifact="exported"), _context(tmp_path)).load()
    assert info.value.exit_code == 3


def test_ort_gpu_fails_when_most_node_time_is_on_cpu(fake_session, tmp_path):
    events = [
        {
            "cat": "Node",
            "name": f"n{i}_kernel_time",
            "ts": i,
            "dur": 100,
            "args": {"provider": CPU if i else CUDA},
        }
        for i in range(5)
    ]
    (tmp_path / "cpu_heavy.json").write_text(json.dumps(events))
    fake_session.providers, fake_session.profile = [CUDA, CPU], tmp_path / "cpu_heavy.json"
    with pytest.raises(MissingDependencyError, match="80% of node time ran on the CPU"):
        OnnxRuntimeGpuEngine(OnnxRuntimeGpuConfig(), _context(tmp_path)).load()


def test_ort_gpu_tensorrt_session_setup(fake_session, tmp_path):
    fake_session.providers, fake_session.profile = [TRT, CUDA, CPU], FIXTURE
    engine = OnnxRuntimeGpuEngine(OnnxRuntimeGpuConfig(provider="tensorrt"), _context(tmp_path)).load()
    created = fake_session.created[-1]
    assert created["enable_fallback"] == 0 and engine._session.fallback_disabled
    (first, trt), (second, cuda), third = created["providers"]
    assert (first, second, third) == (TRT, CUDA, CPU)
    assert trt["trt_int8_enable"] == "True" and trt["trt_profile_opt_shapes"] == "tokens:4x16x8,mask:4x16"
    assert Path(trt["trt_engine_cache_path"]).is_dir() and cuda["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    report = engine.describe()
    assert (
        report["nodes_per_provider"] == {TRT: 1, CUDA: 1, CPU: 2}
        and engine.label == "onnxruntime-tensorrt-int8"
    )
