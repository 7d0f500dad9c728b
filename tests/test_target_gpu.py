"""`target: gpu`: the plan's GPU candidates, exit 3 without CUDA, and scripts/gpu_check.sh's logic.

No GPU here. The plan tests use FAKE machines whose CUDA devices are given as data (name and
compute capability): they prove which candidates the plan asks for, not that any runs on a GPU.
The exit-3 tests run the real CLI and script on this CPU-only torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optcli.errors import MissingDependencyError
from optcli.gpu_target import gpu_candidates
from optcli.plan import Gpu, Machine, make_plan, planned_artifacts

torch = pytest.importorskip("torch")
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
ROOT = Path(__file__).resolve().parents[1]
FAKE_H100 = Gpu("fake H100 (data only)", (9, 0))
FAKE_A100 = Gpu("fake A100 (data only)", (8, 0))
FAKE_T4 = Gpu("fake T4 (data only)", (7, 5))
FAKE_L4 = Gpu("fake L4 (data only)", (8, 9))


def fake_machine(*gpus: Gpu) -> Machine:
    return Machine(cpu_flags=("avx2",), packages=frozenset(), gpus=tuple(gpus), no_gpu_reason="fake: no GPU")


def labels(recipe, gpu: Gpu) -> list[str]:
    return [c.name for c in gpu_candidates(recipe, gpu, planned_artifacts(recipe, fake_machine(gpu)))]


def test_candidates_follow_compute_capability(tiny_recipe):
    recipe = tiny_recipe(quantization="quantization: {precision: int8, calibration: {samples: 16}}")
    h100, a100, t4 = labels(recipe, FAKE_H100), labels(recipe, FAKE_A100), labels(recipe, FAKE_T4)
    assert h100 == [
        "torch-fp16-cuda",
        "torch-bf16-cuda",
        "torch-compile-bf16-cuda",
        "aoti-bf16-cuda",
        "torchao-int8wo-cuda",
        "torchao-int8-cuda",
        "torchao-fp8-cuda",
        "trt-fp32",
        "trt-int8",
        "ort-cuda",
        "ort-trt-fp16",
    ]
    assert a100 == [name for name in h100 if name != "torchao-fp8-cuda"]  # FP8 needs 8.9
    assert labels(recipe, FAKE_L4) == h100  # Ada (8.9) has FP8
    assert "torch-bf16-cuda" not in t4 and "torch-compile-fp16-cuda" in t4 and "aoti-fp16-cuda" in t4
    compiled = gpu_candidates(recipe, FAKE_H100, planned_artifacts(recipe, fake_machine(FAKE_H100)))[2]
    assert (compiled.compile, compiled.compile_mode, compiled.device) == (True, "max-autotune", "cuda")


def test_gpu_plan_lists_every_candidate_and_measures_against_eager_fp32_on_the_gpu(tiny_recipe):
    recipe = tiny_recipe(target="target: gpu", build="build: []")
    plan = make_plan(recipe, fake_machine(FAKE_H100))
    planned = [e.label for e in plan.engines] + [m["engine"] for m in plan.not_available]
    assert sorted(planned) == sorted(labels(recipe, FAKE_H100))
    assert (plan.baseline.device, plan.baseline.name) == ("cuda", "pytorch-eager-fp32-cuda")
    assert any("baseline is eager FP32 on the GPU" in note for note in plan.notes)
    assert "quantized_nncf" not in plan.artifacts  # the OpenVINO artifact is a CPU-target thing
    if not torch.cuda.is_available():  # the real engines' checks say why the fake GPU's candidates can't run
        assert plan.engines == []
        assert all(m["reason"] and m["fix"] for m in plan.not_available)
        assert any("CUDA" in m["reason"] for m in plan.not_available)


def test_gpu_target_without_cuda_is_a_missing_backend(tiny_recipe):
    recipe = tiny_recipe(target="target: gpu")
    with pytest.raises(MissingDependencyError) as info:
        make_plan(recipe, fake_machine())
    assert info.value.exit_code == 3
    assert "target: gpu needs a CUDA GPU, and fake: no GPU" in info.value.message
    assert "--target cpu" in info.value.hint
    make_plan(tiny_recipe(target="target: cpu"), fake_machine())  # cpu never asks for a GPU


@needs_no_gpu
def test_cli_target_gpu_exits_3_before_any_stage(write_recipe, model_dir):
    path = write_recipe()
    out = model_dir / "run"
    result = subprocess.run(
        [sys.executable, "-m", "optcli", "run", str(path), "--target", "gpu", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 3, result.stderr
    assert "target: gpu needs a CUDA GPU" in result.stderr and "Traceback" not in result.stderr
    assert "no CUDA support" in result.stderr or "sees no CUDA device" in result.stderr
    assert not (out / "exported.onnx").exists()


def _gpu_check(tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "gpu-check")}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, env=env, timeout=120
    )


@needs_no_gpu
def test_gpu_check_script_says_cuda_is_missing_and_exits_3(tmp_path):
    result = _gpu_check(tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "gpu_check: CUDA is not available:" in result.stderr and "nothing was run" in result.stderr
    assert not (tmp_path / "gpu-check").exists()  # it stopped before running anything


def test_gpu_check_script_without_torch_exits_3(tmp_path):
    env = {**os.environ, "PYTHON": "/bin/false", "OUT": str(tmp_path / "x")}
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 3 and "cannot import torch" in result.stderr


def _report(device: str) -> dict:
    return {
        "verdict": "pass",
        "engines": [
            {"label": "eager", "baseline": True, "precision": "fp32", "device": device},
            {"label": "torch-bf16-cuda", "baseline": False, "precision": "bf16", "device": device},
        ],
        "validation": {"engines": [{"engine": "torch-bf16-cuda", "metrics": {"cosine": 0.99991}}]},
        "benchmark": {
            "results": [
                {"engine": "eager", "batch_size": 32, "latency_ms": {"p50": 10.0}, "speedup": 1.0},
                {"engine": "torch-bf16-cuda", "batch_size": 32, "latency_ms": {"p50": 2.5}, "speedup": 4.0},
            ]
        },
    }


def test_gpu_table_prints_speedup_only_against_a_gpu_baseline(tmp_path):
    for name, device in (("gpu-run", "NVIDIA H200"), ("cpu-run", "cpu")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "report.json").write_text(json.dumps(_report(device)))
    reports = [str(tmp_path / n / "report.json") for n in ("gpu-run", "cpu-run", "missing")]
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_table.py"), *reports], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "run",
        "engine",
        "precision",
        "batch",
        "p50",
        "ms",
        "speedup",
        "cosine",
        "device",
    ]
    gpu = next(line for line in lines if line.startswith("gpu-run") and "bf16-cuda" in line)
    assert gpu.split()[2:7] == ["bf16", "32", "2.500", "4.00x", "0.99991"]
    cpu = next(line for line in lines if line.startswith("cpu-run") and "bf16-cuda" in line)
    assert "n/a (cpu baseline)" in cpu  # a CPU baseline is not eager FP32 on the same GPU
    assert "missing: no report.json" in result.stdout
