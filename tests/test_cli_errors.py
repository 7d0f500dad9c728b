"""The exit-code contract: user errors exit 2 with a clear message and no traceback, a failed gate exits 1
with a report, and a failing run leaves no half-written artifact behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_recipe_text

FAST_EXPORT = "export: {exporter: torchscript}"  # same checks, a fraction of the dynamo exporter's time
INT8_FROM_FILE = (
    "quantization: {precision: int8, calibration: "
    "{data: {type: files, path: calib.npz}, samples: 8, batch_size: 4}}"
)


def run_process(*args, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "OPTCLI_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "optcli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        env={**environ, **(env or {})},
    )


def assert_no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert 'File "' not in stderr, stderr


def assert_no_partial_artifacts(out: Path, *absent: str) -> None:
    leftovers = [p.name for p in out.iterdir() if p.name.startswith((".staging-", ".quant-", ".write-test-"))]
    assert leftovers == [], leftovers
    for name in absent:
        assert not (out / name).exists(), f"{name} left in {out}"
    for path in out.glob("*.onnx"):  # what is there is whole
        import onnx

        onnx.checker.check_model(str(path))


def error_report(out: Path) -> dict:
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "error"
    assert report["verdict"] == "error"
    return report


# ------------------------------------------------------------------------------------ recipe file


def test_missing_recipe_file_process(model_dir):
    proc = run_process("run", "nope.yaml", "--out", "out", cwd=model_dir)
    assert proc.returncode == 2, proc.stderr
    assert "error: nope.yaml: recipe file does not exist" in proc.stderr
    assert_no_traceback(proc.stderr)
    assert not (model_dir / "out").exists()


def test_bad_yaml_names_the_line(cli, write_recipe):
    text = tiny_recipe_text().replace("source: models.py:make_two_layer", "source: [models.py")
    path = write_recipe(text)
    code, _, err = cli("run", path, "--out", path.parent / "out")
    assert code == 2
    assert f"error: {path}:" in err and ": invalid YAML:" in err
    line = int(err.split(f"{path}:")[1].split(":")[0])
    assert 3 <= line <= 5  # the unclosed '[' on line 3; PyYAML reports where it gave up
    assert_no_traceback(err)
    assert not (path.parent / "out").exists()


def test_unknown_field_names_file_line_and_field(cli, write_recipe):
    path = write_recipe(benchmark="benchmark:\n  batch_sizes: [1]\n  iterationz: 3")
    line = path.read_text().splitlines().index("  iterationz: 3") + 1
    code, _, err = cli("run", path)
    assert code == 2
    assert f"error: {path}:{line}: field 'benchmark.iterationz': unknown field" in err
    assert "optcli recipe schema" in err
    assert_no_traceback(err)


def test_wrong_type_names_file_line_field_and_value(cli, write_recipe):
    path = write_recipe(benchmark="benchmark: {batch_sizes: [1], iterations: many}")
    line = path.read_text().splitlines().index("benchmark: {batch_sizes: [1], iterations: many}") + 1
    code, _, err = cli("run", path)
    assert code == 2
    assert f"{path}:{line}: field 'benchmark.iterations'" in err
    assert "valid integer" in err and "'many'" in err
    assert_no_traceback(err)


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("quantization", "--set expects 'dotted.field=value', got 'quantization'"),
        ("model.inputs.4.name=y", "--set: field 'model.inputs.4': index 4 is out of range"),
        ("quantization.precision=int4", "field 'quantization.precision': Input should be"),
    ],
)
def test_bad_set_exits_2(cli, write_recipe, assignment, expected):
    code, _, err = cli("run", write_recipe(), "--set", assignment, "--dry-run")
    assert code == 2
    assert expected in err
    assert_no_traceback(err)


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--bogus"], "No such option: --bogus"), (["--out"], "Option '--out' requires an argument")],
)
def test_bad_flags_exit_2(cli, write_recipe, args, expected):
    code, _, err = cli("run", write_recipe(), *args)
    assert code == 2
    assert expected in err
    assert_no_traceback(err)


def test_file_name_with_brackets_is_reported_verbatim(cli, tmp_path):
    code, _, err = cli("run", tmp_path / "recipe[v2].yaml")
    assert code == 2
    assert "recipe[v2].yaml: recipe file does not exist" in err


def test_markup_like_text_in_a_message_does_not_crash(cli, tmp_path):
    code, _, err = cli("run", tmp_path / "a[/b]" / "recipe.yaml")
    assert code == 2
    assert "a[/b]" in err


# ------------------------------------------------------------------------------------------ model


def model_recipe(write_recipe, source: str, **sections: str) -> Path:
    return write_recipe(tiny_recipe_text(**sections).replace("models.py:make_two_layer", source))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("no_such_module_xyz:make", "model.source: cannot import module 'no_such_module_xyz'"),
        ("missing.py:make", "model.source: file '{dir}/missing.py' does not exist"),
        (
            "models.py:make_three_layer",
            "model.source: 'models.py' has no attribute 'make_three_layer' (it defines: ",
        ),
        ("models.py:not_a_module", "model.source: 'models.py:not_a_module' returned a int, expected a"),
        ("models.py", "model.source: 'models.py' is not 'pkg.module:function'"),
        ("models.py:TwoLayer.nope", "model.source: 'models.py' has no attribute 'TwoLayer.nope'"),
    ],
)
def test_bad_model_source_exits_2(cli, write_recipe, model_dir, source, expected):
    out = model_dir / "out"
    code, _, err = cli("run", model_recipe(write_recipe, source), "--out", out, "-q")
    assert code == 2, err
    assert "error: " + expected.format(dir=model_dir) in err
    assert_no_traceback(err)
    assert_no_partial_artifacts(out, "exported.onnx")
    assert error_report(out)["stages"] == []


def test_missing_attribute_lists_what_the_module_defines(cli, write_recipe, model_dir):
    path = model_recipe(write_recipe, "models.py:make_three_layer")
    code, _, err = cli("run", path, "-o", model_dir / "out")
    assert code == 2
    assert "make_two_layer" in err and "not_a_module" in err


def test_bad_model_kwargs_exit_2(cli, write_recipe, model_dir):
    path = model_recipe(write_recipe, "models.py:make_two_layer\n  kwargs: {width: 8}")
    code, _, err = cli("run", path, "--out", model_dir / "out")
    assert code == 2
    assert "model.kwargs: calling 'models.py:make_two_layer' failed" in err and "width" in err


def test_input_shape_that_does_not_fit_the_model(cli, write_recipe, model_dir):
    path = write_recipe(tiny_recipe_text(export=FAST_EXPORT).replace("[batch, 16]", "[batch, 15]"))
    out = model_dir / "out"
    code, _, err = cli("run", path, "--out", out)
    assert code == 2
    assert "error: model.inputs: the model rejected inputs shaped like the recipe declares (x(4, 15))" in err
    assert "4x15 and 16x32" in err
    assert_no_traceback(err)
    assert_no_partial_artifacts(out, "exported.onnx")
    report = error_report(out)
    assert [s["name"] for s in report["stages"]] == ["load"]


def test_input_shape_mismatch_process_has_no_traceback_but_debug_has(write_recipe, model_dir):
    path = write_recipe(tiny_recipe_text(export=FAST_EXPORT).replace("[batch, 16]", "[batch, 15]"))
    proc = run_process("run", path.name, "--out", "out", "-q", cwd=model_dir)
    assert proc.returncode == 2
    assert "error: model.inputs: the model rejected inputs" in proc.stderr
    assert_no_traceback(proc.stderr)
    assert_no_partial_artifacts(model_dir / "out", "exported.onnx")

    debug = run_process("run", path.name, "--out", "out", "-q", "--debug", cwd=model_dir)
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr
    assert "RuntimeError" in debug.stderr  # the model's own error, chained
    assert "error: model.inputs: the model rejected inputs" in debug.stderr


def test_debug_env_variable_shows_traceback(cli, write_recipe, monkeypatch):
    path = model_recipe(write_recipe, "models.py:not_a_module")
    monkeypatch.setenv("OPTCLI_DEBUG", "1")
    code, _, err = cli("run", path, "-o", path.parent / "out")
    assert code == 2
    assert "Traceback" in err and "UserInputError" in err
    assert err.rstrip().endswith("expected a torch.nn.Module")


def test_syntax_error_in_model_file_is_bad_input(cli, write_recipe, model_dir):
    (model_dir / "broken.py").write_text("import torch\n\ndef make(:\n    pass\n")
    code, _, err = cli("run", model_recipe(write_recipe, "broken.py:make"), "-o", model_dir / "out")
    assert code == 2, err
    assert "model.source" in err and "broken.py" in err and "line 3" in err
    assert "internal error" not in err


def test_model_factory_that_raises_is_bad_input(cli, write_recipe, model_dir):
    (model_dir / "raising.py").write_text("def make():\n    raise ValueError('hidden size must be even')\n")
    code, _, err = cli("run", model_recipe(write_recipe, "raising.py:make"), "-o", model_dir / "out")
    assert code == 2, err
    assert "model.source" in err and "hidden size must be even" in err


# ------------------------------------------------------------------------------------- checkpoint


def test_checkpoint_that_does_not_match(cli, write_recipe, model_dir):
    import torch

    torch.save({"fc1.weight": torch.zeros(3, 3)}, model_dir / "weights.pt")
    path = model_recipe(write_recipe, "models.py:make_two_layer\n  checkpoint: weights.pt")
    out = model_dir / "out"
    code, _, err = cli("run", path, "--out", out)
    assert code == 2
    assert f"error: model.checkpoint: '{model_dir / 'weights.pt'}' does not match the model" in err
    assert "3 missing keys (fc1.bias, fc2.weight, fc2.bias)" in err
    assert "1 shape mismatch (fc1.weight (checkpoint [3, 3], model [32, 16]))" in err
    assert_no_traceback(err)
    assert_no_partial_artifacts(out, "exported.onnx")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "model.checkpoint: file '{dir}/weights.pt' does not exist"),
        (b"not a checkpoint", "model.checkpoint: cannot load '{dir}/weights.pt' with weights_only=True"),
    ],
    ids=["missing", "garbage"],
)
def test_checkpoint_missing_or_unreadable(cli, write_recipe, model_dir, content, expected):
    if content is not None:
        (model_dir / "weights.pt").write_bytes(content)
    path = model_recipe(write_recipe, "models.py:make_two_layer\n  checkpoint: weights.pt")
    code, _, err = cli("run", path, "--out", model_dir / "out")
    assert code == 2
    assert expected.format(dir=model_dir) in err


# ------------------------------------------------------------------------------- calibration data


def calib_recipe(write_recipe, model_dir: Path, **arrays) -> Path:
    np.savez(model_dir / "calib.npz", **arrays)
    return write_recipe(export=FAST_EXPORT, quantization=INT8_FROM_FILE)


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        (
            {"x": np.zeros((8, 15), np.float32)},
            "quantization.calibration.data (batch 0): input 'x' axis 1 is 15, the recipe declares 16",
        ),
        (
            {"x": np.zeros((8, 4, 16), np.float32)},
            "quantization.calibration.data (batch 0): input 'x' has 3 dimensions (8, 4, 16), the recipe "
            "declares 2",
        ),
        (
            {"x": np.zeros((8, 16), np.complex64)},
            "quantization.calibration.data (batch 0): input 'x' has dtype complex64, the recipe declares "
            "float32",
        ),
        (
            {"x": np.full((8, 16), "a")},
            "quantization.calibration.data (batch 0): input 'x' has dtype <U1, the recipe declares float32",
        ),
        (
            {"images": np.zeros((8, 16), np.float32)},
            "quantization.calibration.data: '{dir}/calib.npz' has keys ['images'], no 'x' for input 'x' "
            "(map it with quantization.calibration.data.keys)",
        ),
    ],
    ids=["axis", "rank", "complex", "strings", "missing-key"],
)
def test_bad_calibration_arrays_exit_2(cli, write_recipe, model_dir, arrays, expected):
    out = model_dir / "out"
    code, _, err = cli("run", calib_recipe(write_recipe, model_dir, **arrays), "--out", out, "-q")
    assert code == 2, err
    assert "error: " + expected.format(dir=model_dir) in err
    assert_no_traceback(err)
    # The export before it is complete and kept; the quantized model is not half there.
    assert_no_partial_artifacts(out, "quantized.onnx")
    assert (out / "exported.onnx").is_file()
    report = error_report(out)
    assert [s["name"] for s in report["stages"]] == ["load", "export"]


def test_npz_key_mapping_and_compatible_dtype_are_accepted(cli, write_recipe, model_dir):
    # Same file as the missing-key case, mapped with `keys`; float64 converts safely to float32.
    np.savez(model_dir / "calib.npz", images=np.random.default_rng(0).standard_normal((8, 16)))
    path = write_recipe(
        export=FAST_EXPORT,
        quantization="quantization: {precision: int8, calibration: "
        "{data: {type: files, path: calib.npz, keys: {x: images}}, samples: 8, batch_size: 4}}",
    )
    out = model_dir / "out"
    code, _, err = cli("run", path, "--out", out, "-q")
    assert code in (0, 1), err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "finished"
    quantize = next(s for s in report["stages"] if s["name"] == "quantize:int8")
    assert quantize["details"]["calibration_samples"] == 8
    assert_no_partial_artifacts(out)


def test_calibration_file_that_does_not_exist(cli, write_recipe, model_dir):
    path = write_recipe(export=FAST_EXPORT, quantization=INT8_FROM_FILE)
    code, _, err = cli("run", path, "--out", model_dir / "out", "-q")
    assert code == 2
    assert "quantization.calibration.data.path: no file matches 'calib.npz'" in err


def test_calibration_file_that_is_not_npz(cli, write_recipe, model_dir):
    (model_dir / "calib.npz").write_bytes(b"garbage, not a zip")
    path = write_recipe(export=FAST_EXPORT, quantization=INT8_FROM_FILE)
    out = model_dir / "out"
    code, _, err = cli("run", path, "--out", out, "-q")
    assert code == 2
    assert f"quantization.calibration.data.path: cannot read '{model_dir / 'calib.npz'}'" in err
    assert "allow_pickle" not in err  # numpy's advice to unpickle a data file is not passed on
    assert_no_partial_artifacts(out, "quantized.onnx")


def test_bad_validation_arrays_exit_2(cli, write_recipe, model_dir):
    np.savez(model_dir / "val.npz", x=np.zeros((8, 12), np.float32))
    path = write_recipe(
        export=FAST_EXPORT,
        validate="validate: {data: {type: files, path: val.npz}, samples: 8, batch_size: 4}",
    )
    out = model_dir / "out"
    code, _, err = cli("run", path, "--out", out, "-q")
    assert code == 2
    assert "error: validate.data (batch 0): input 'x' axis 1 is 12, the recipe declares 16" in err
    assert_no_partial_artifacts(out)
    assert error_report(out)["stages"][-1]["name"] == "build"


def test_calibration_errors_process_has_no_traceback(write_recipe, model_dir):
    np.savez(model_dir / "calib.npz", x=np.zeros((8, 16), np.complex64))
    write_recipe(export=FAST_EXPORT, quantization=INT8_FROM_FILE)
    proc = run_process("run", "recipe.yaml", "--out", "out", "-q", cwd=model_dir)
    assert proc.returncode == 2
    assert "input 'x' has dtype complex64" in proc.stderr
    assert_no_traceback(proc.stderr)
    assert_no_partial_artifacts(model_dir / "out", "quantized.onnx")


# ---------------------------------------------------------------------------------- output folder


def test_output_folder_under_a_regular_file(cli, write_recipe, model_dir):
    blocker = model_dir / "afile"
    blocker.write_text("keep me")
    code, _, err = cli("run", write_recipe(), "--out", blocker / "run")
    assert code == 2
    assert f"error: output folder '{blocker / 'run'}' cannot be written" in err
    assert "hint: pass a writable folder with --out" in err
    assert_no_traceback(err)
    assert blocker.read_text() == "keep me"


def test_output_folder_that_is_a_file(cli, write_recipe, model_dir):
    blocker = model_dir / "afile"
    blocker.write_text("keep me")
    code, _, err = cli("run", write_recipe(), "--out", blocker)
    assert code == 2
    assert f"output folder '{blocker}' cannot be written" in err
    assert blocker.read_text() == "keep me"


def test_leftovers_of_an_interrupted_run_are_removed(cli, write_recipe, model_dir):
    out = model_dir / "out"
    (out / ".staging-old").mkdir(parents=True)
    (out / ".staging-old" / "exported.onnx").write_bytes(b"half")
    code, _, _ = cli("run", model_recipe(write_recipe, "models.py:not_a_module"), "--out", out)
    assert code == 2
    assert_no_partial_artifacts(out, ".staging-old", "exported.onnx")


# ------------------------------------------------------------------------------------------ gates


def test_failed_gate_exits_1_with_report(cli, write_recipe, model_dir):
    path = write_recipe(
        export=FAST_EXPORT,
        benchmark='benchmark: {batch_sizes: [1], warmup: 1, iterations: 3, gates: {p50_ms: "<= 0.000001"}}',
    )
    out = model_dir / "out"
    code, _, err = cli("run", path, "--out", out)
    assert code == 1, err
    assert (
        "FAIL (1 gate(s) failed): benchmark.p50_ms on onnxruntime-fp32 = " in err
        and str(out / "report.json") in err
    )
    assert_no_traceback(err)
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "finished"
    assert report["verdict"] == "fail"
    failed = [g for g in report["gates"] if not g["passed"]]
    assert [(g["name"], g["engine"], g["threshold_text"]) for g in failed] == [
        ("benchmark.p50_ms", "onnxruntime-fp32", "<= 1e-06")
    ]
    assert failed[0]["value"] > 1e-6
    assert "FAIL" in (out / "report.md").read_text().upper()
    assert_no_partial_artifacts(out)


def test_failed_validation_gate_exits_1(cli, write_recipe, model_dir):
    path = write_recipe(
        export=FAST_EXPORT,
        validate='validate: {samples: 16, batch_size: 8, gates: {max_abs: "< 0"}}',
    )
    out = model_dir / "out"
    code, _, err = cli("run", path, "--out", out, "-q")
    assert code == 1, err
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "fail"
    assert [g["name"] for g in report["gates"] if not g["passed"]] == ["validate.max_abs"]


# ----------------------------------------------------------------------- the other exit codes


def interrupt_export(monkeypatch) -> None:
    """Ctrl-C right after the exporter has written the whole file, before it is moved into place."""
    import optcli.stages.model

    real_export = optcli.stages.model.export_onnx

    def interrupted_export(model, resolver, dst, **kwargs):
        real_export(model, resolver, dst, **kwargs)
        assert dst.is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(optcli.stages.model, "export_onnx", interrupted_export)


def test_interrupt_exits_130_and_leaves_no_partial_export(cli, write_recipe, model_dir, monkeypatch):
    interrupt_export(monkeypatch)
    out = model_dir / "out"
    code, _, err = cli("run", write_recipe(export=FAST_EXPORT), "--out", out)
    assert code == 130
    assert_no_traceback(err)
    assert_no_partial_artifacts(out, "exported.onnx")
    report = json.loads((out / "report.json").read_text())
    assert (report["status"], report["error"]["stage"]) == ("interrupted", "export")
    assert report["stages"][-1]["name"] == "load"


def test_interrupt_says_so(cli, write_recipe, model_dir, monkeypatch):
    interrupt_export(monkeypatch)
    code, _, err = cli("run", write_recipe(export=FAST_EXPORT), "--out", model_dir / "out")
    assert code == 130
    assert "interrupted" in err


def test_internal_error_exits_4_without_traceback_unless_debug(cli, write_recipe, model_dir, monkeypatch):
    import optcli.pipeline

    def broken(*args):
        raise RuntimeError("boom in the pass stage")

    monkeypatch.setattr(optcli.pipeline, "passes_stage", broken)
    path = write_recipe(export=FAST_EXPORT)
    out = model_dir / "out"
    code, _, err = cli("run", path, "--out", out, "-q")
    assert code == 4
    assert "internal error: RuntimeError: boom in the pass stage" in err
    assert "--debug" in err
    assert_no_traceback(err)
    assert_no_partial_artifacts(out)
    assert error_report(out)["stages"][-1]["name"] == "export"

    code, _, err = cli("run", path, "--out", out, "-q", "--debug")
    assert code == 4
    assert "Traceback" in err and "boom in the pass stage" in err


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_cuda_available(), reason="needs a machine without CUDA")
def test_engine_that_cannot_run_here_exits_3(cli, write_recipe, model_dir):
    path = write_recipe(build="build:\n  - engine: onnxruntime\n  - {engine: torch, device: cuda, name: gpu}")
    out = model_dir / "out"
    code, _, err = cli("run", path, "--out", out)
    assert code == 3
    assert "error: build.1 ('gpu') cannot run on this machine: torch: no CUDA device is visible" in err
    assert "hint:" in err and "--skip-unavailable" in err
    assert_no_traceback(err)
    assert_no_partial_artifacts(out, "exported.onnx")  # checked before any expensive stage

    code, _, err = cli(
        "run", path, "--out", out, "-q", "--skip-unavailable", "--set", "export.exporter=torchscript"
    )
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert [s["engine"] for s in report["skipped_engines"]] == ["gpu"]
    assert [e["label"] for e in report["engines"]] == ["pytorch-eager-fp32", "onnxruntime-fp32"]


def _has_torchvision() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchvision") is not None


VISION_MODEL = (
    "model:\n  source: optcli.examples.vision:resnet50\n  inputs:\n    - {name: x, shape: [batch, 3, 8, 8]}"
)


@pytest.mark.skipif(_has_torchvision(), reason="needs a machine without torchvision")
def test_missing_optional_package_exits_3(cli, write_recipe, model_dir):
    out = model_dir / "out"
    code, _, err = cli("run", write_recipe(model=VISION_MODEL), "--out", out)
    assert code == 3
    assert "Python package 'torchvision' is not installed (needed for the ResNet-50 example)" in err
    assert "hint: pip install" in err and "torchvision" in err
    assert_no_traceback(err)


@pytest.mark.skipif(_has_torchvision(), reason="needs a machine without torchvision")
def test_missing_optional_package_hint_is_printed_verbatim(cli, write_recipe, model_dir):
    code, _, err = cli("run", write_recipe(model=VISION_MODEL), "--out", model_dir / "out")
    assert code == 3
    assert "hint: pip install 'optcli[vision]'" in err
