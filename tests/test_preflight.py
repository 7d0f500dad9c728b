"""Preflight: engines, the baseline device and the quantizer are checked before any expensive stage.

This machine has no GPU and no TensorRT, so these checks run against the real environment."""

from __future__ import annotations

import json

import pytest

from optcli.console import SilentUI
from optcli.errors import MissingDependencyError
from optcli.pipeline import run_recipe
from optcli.plan import Machine, make_plan, planned_artifacts
from optcli.recipe import load_recipe

torch = pytest.importorskip("torch")
needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")

TRT_BUILD = "build:\n  - {engine: onnxruntime}\n  - {name: trt, engine: tensorrt, artifact: quantized}"
QUANT = "quantization: {precision: int8, calibration: {samples: 16}}"


@needs_no_gpu
def test_missing_engine_stops_before_export(write_recipe, tmp_path):
    path = write_recipe(build=TRT_BUILD, quantization=QUANT)
    with pytest.raises(MissingDependencyError) as info:
        run_recipe(load_recipe(path), tmp_path / "run", SilentUI())
    assert info.value.exit_code == 3
    assert "build.1 ('trt')" in info.value.message and "pip install tensorrt" in info.value.hint
    assert not (tmp_path / "run" / "exported.onnx").exists()  # nothing expensive ran


@needs_no_gpu
def test_skip_unavailable_runs_the_rest_and_marks_the_skip(write_recipe, tmp_path):
    path = write_recipe(build=TRT_BUILD, quantization=QUANT)
    report = run_recipe(load_recipe(path, ["skip_unavailable=true"]), tmp_path / "run", SilentUI()).to_dict()
    assert [s["engine"] for s in report["skipped_engines"]] == ["trt"]
    assert [e["engine"] for e in report["validation"]["engines"]] == ["onnxruntime-int8"]
    assert all(g["engine"] != "trt" for g in report["gates"])  # a skipped engine has no passing gate
    assert "Skipped engines" in (tmp_path / "run" / "report.md").read_text()
    assert json.loads((tmp_path / "run" / "report.json").read_text())["skipped_engines"][0]["fix"]


@needs_no_gpu
def test_cuda_baseline_needs_a_gpu_or_falls_back_when_skipping(write_recipe, tmp_path):
    path = write_recipe(baseline="baseline: {device: cuda}")
    with pytest.raises(MissingDependencyError, match=r"baseline\.device"):
        run_recipe(load_recipe(path), tmp_path / "a", SilentUI())
    report = run_recipe(load_recipe(path, ["skip_unavailable=true"]), tmp_path / "b", SilentUI()).to_dict()
    assert any("baseline ran on the CPU" in w for w in report["warnings"])


def test_planned_precision_follows_the_recipe(tiny_recipe):
    recipe = tiny_recipe(quantization="quantization: {precision: fp8}", passes="passes: [fp16]")
    machine = Machine(cpu_flags=(), packages=frozenset())
    assert planned_artifacts(recipe, machine) == {"exported": "fp32", "optimized": "fp16", "quantized": "fp8"}
    (engine,) = make_plan(recipe, machine).engines  # the tiny recipe's one engine runs 'final'
    assert (engine.artifact, engine.precision) == ("quantized", "fp8")


def test_quantizer_settings_are_checked_before_export(write_recipe, tmp_path):
    from optcli.errors import UserInputError

    path = write_recipe(quantization="quantization: {quantizer: modelopt, calibration: {method: percentile}}")
    with pytest.raises(UserInputError, match="not available with quantizer: modelopt"):
        run_recipe(load_recipe(path), tmp_path / "run", SilentUI())
    assert not (tmp_path / "run" / "exported.onnx").exists()
