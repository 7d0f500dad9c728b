"""End to end: a model built to be INT8-sensitive fails a tight gate, and recovery fixes it."""

from __future__ import annotations

import yaml

from optcli.console import SilentUI
from optcli.pipeline import run_recipe
from optcli.recipe import load_recipe

MODEL = """model:
  source: models.py:make_outlier_mlp
  inputs:
    - {name: x, shape: [batch, 16]}"""
QUANT = """quantization:
  precision: int8
  calibration: {samples: 128, batch_size: 32}"""
GATE = "validate: {samples: 256, batch_size: 64, gates: {top1_agreement: '>= 0.97'}}"


def test_plain_int8_fails_the_gate(write_recipe, tmp_path):
    path = write_recipe(model=MODEL, quantization=QUANT, validate=GATE)
    report = run_recipe(load_recipe(path), tmp_path / "plain", SilentUI()).to_dict()
    assert report["verdict"] == "fail"
    (engine,) = report["validation"]["engines"]
    assert engine["metrics"]["top1_agreement"] < 0.97


def test_recovery_keeps_only_the_outlier_layer_in_fp32(write_recipe, tmp_path):
    accuracy = "\n  accuracy: {metric: top1_agreement, max_drop: 0.02, max_trials: 4, samples: 128}"
    path = write_recipe(model=MODEL, quantization=QUANT + accuracy, validate=GATE)
    out = tmp_path / "recovered"
    report = run_recipe(load_recipe(path), out, SilentUI()).to_dict()
    recovery = report["quantization"]["recovery"]
    assert recovery["passed"] and recovery["initial_value"] < 0.97
    assert len(recovery["trials"]) <= 4
    assert recovery["kept_in_fp32"]["modules"] and set(recovery["kept_in_fp32"]["modules"]) <= {"mid", "out"}
    assert report["verdict"] == "pass"  # the held-out validation gate passes too
    patch = yaml.safe_load((out / "recipe-patch.yaml").read_text())
    assert patch["quantization"]["exclude"]["modules"] == recovery["kept_in_fp32"]["modules"]
    precision = report["quantization"]["precision_by_op"]["Gemm"]
    assert precision.get("int8", 0) >= 1 and precision.get("fp32", 0) >= 1  # mixed precision


def test_recovery_that_cannot_succeed_fails_loudly(write_recipe, tmp_path):
    accuracy = "\n  accuracy: {metric: top1_agreement, max_drop: 0.0, max_trials: 1, samples: 128}"
    path = write_recipe(model=MODEL, quantization=QUANT + accuracy, validate=GATE)
    report = run_recipe(load_recipe(path), tmp_path / "budget", SilentUI()).to_dict()
    gate = next(g for g in report["gates"] if g["name"].startswith("quantization.accuracy"))
    assert not gate["passed"] and "trial" in gate["detail"]
    assert report["verdict"] == "fail"
    assert any("recovery missed the target" in w for w in report["warnings"])
