"""End-to-end runs through the real pipeline: the built-in example and tiny user models."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from optcli.console import SilentUI
from optcli.passes import PASSES
from optcli.pipeline import run_recipe
from optcli.recipe import load_recipe

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def example_report(tmp_path_factory):
    """The README's example recipe, with a shorter benchmark."""
    out = tmp_path_factory.mktemp("example")
    recipe = load_recipe(
        REPO / "recipes" / "example.yaml",
        ["benchmark.iterations=20", "benchmark.warmup=2", "benchmark.batch_sizes=[1]"],
    )
    report = run_recipe(recipe, out, SilentUI())
    return out, report.to_dict()


def test_example_int8_keeps_task_accuracy(example_report):
    _, data = example_report
    engines = {e["engine"]: e for e in data["validation"]["engines"]}
    baseline_acc = data["validation"]["baseline"]["accuracy"]
    assert baseline_acc > 0.95  # a real trained model on real held-out digits
    assert engines["ort-int8"]["precision"] == "int8"
    assert abs(engines["ort-int8"]["metrics"]["accuracy"] - baseline_acc) <= 0.01
    assert data["validation"]["overlap_with_calibration"] == 0
    assert not data["validation"]["synthetic"]


def test_report_contract(example_report):
    out, data = example_report
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["verdict"] == data["verdict"] == "pass"
    for key in ("schema_version", "recipe", "environment", "stages", "validation", "benchmark", "gates"):
        assert key in on_disk
    assert {"torch", "onnxruntime", "onnx"} <= set(on_disk["environment"]["packages"])
    stages = {s["name"]: s for s in on_disk["stages"]}
    assert Path(stages["export"]["artifact"]).exists() and Path(stages["quantize:int8"]["artifact"]).exists()
    result = next(r for r in on_disk["benchmark"]["results"] if r["engine"] == "ort-int8")
    assert set(result["latency_ms"]) >= {"p50", "p90", "p99", "mean"}
    assert result["speedup"] > 0 and result["throughput"] > 0
    gate = on_disk["gates"][0]
    assert set(gate) >= {"name", "value", "threshold", "passed"}
    assert "ort-int8" in (out / "report.md").read_text()
    assert not list(out.glob(".staging-*")) and not list(out.glob(".quant-*"))


@pytest.mark.parametrize("precision", ["fp16", "fp8"])
def test_other_precisions_run(write_recipe, tmp_path, precision):
    path = write_recipe(
        quantization=f"quantization: {{precision: {precision}, calibration: {{samples: 16}}}}"
    )
    report = run_recipe(load_recipe(path), tmp_path / "run", SilentUI()).to_dict()
    (engine,) = report["validation"]["engines"]
    assert engine["precision"] == precision
    assert engine["metrics"]["cosine"] > 0.95
    assert any("synthetic" in w for w in report["warnings"])


def test_multi_input_model_with_tuple_outputs(write_recipe, tmp_path):
    path = write_recipe(
        model="""model:
  source: models.py:make_two_inputs
  inputs:
    - {name: tokens, shape: [batch, seq, 8]}
    - {name: mask, shape: [batch, seq]}
  dims: {seq: {min: 2, opt: 8, max: 64}}
  outputs: [pooled, hidden]""",
        quantization="quantization: {precision: int8, calibration: {samples: 16}}",
    )
    report = run_recipe(load_recipe(path), tmp_path / "run", SilentUI()).to_dict()
    (engine,) = report["validation"]["engines"]
    assert set(engine["outputs"]) == {"pooled", "hidden"}
    assert report["verdict"] == "pass"


def test_identical_calibration_and_validation_data_is_refused(write_recipe, tmp_path):
    from optcli.errors import UserInputError

    path = write_recipe(
        quantization="quantization: {calibration: {data: {type: synthetic, seed: 5}}}",
        validate="validate: {data: {type: synthetic, seed: 5}}",
    )
    with pytest.raises(UserInputError, match="held-out"):
        run_recipe(load_recipe(path), tmp_path / "run", SilentUI())
    assert not (tmp_path / "run" / "exported.onnx").exists()  # refused before any expensive stage


def test_interrupt_leaves_no_partial_artifact(write_recipe, tmp_path, monkeypatch):
    import optcli.passes.shape_inference as shape_inference

    def interrupted(src, dst, options):
        dst.write_bytes(b"half")  # a partial file in the staging area
        raise KeyboardInterrupt

    monkeypatch.setitem(
        PASSES, "shape_inference", dataclasses.replace(shape_inference.PASS, apply=interrupted)
    )
    path = write_recipe(passes="passes: [shape_inference]")
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run_recipe(load_recipe(path), out, SilentUI())
    assert (out / "exported.onnx").exists()  # earlier artifacts stay intact
    assert not list(out.glob("pass-*")) and not list(out.glob(".staging-*"))
    assert json.loads((out / "report.json").read_text())["verdict"] == "error"
