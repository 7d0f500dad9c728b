"""The commands themselves: help, recipe schema / init / validate, run --dry-run, run --set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import optcli
from optcli.recipe import load_recipe, recipe_schema

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------- help


HELP = {
    "optcli": (
        [],
        [
            "run",
            "recipe",
            "version",
            "diagnose",
            "doctor",
            "Exit codes",
            "1 a gate failed",
            "2 bad input",
            "--version",
            "--verbose",
            "--install-completion",
            "-h",
        ],
    ),
    "run": (
        ["run"],
        [
            "RECIPE",
            "--set",
            "-s",
            "--out",
            "-o",
            "--quiet",
            "-q",
            "--dry-run",
            "--skip-unavailable",
            "--no-cache",
            "dotted.path",
            "--json",
            "--target",
            "cpu|auto|gpu",
            "the artifact to deploy",
        ],
    ),
    "recipe": (["recipe"], ["validate", "schema", "init"]),
    "recipe validate": (["recipe", "validate"], ["RECIPE", "--set", "every problem", "--json"]),
    "recipe schema": (["recipe", "schema"], ["JSON Schema"]),
    "recipe init": (["recipe", "init"], ["--model", "--input", "-i", "--output", "-o", "--name", "--force"]),
    "version": (["version"], ["version"]),
    "compare": (["compare"], ["BASE", "NEW", "--regression", "--json", "--allow-different", "95%"]),
    "doctor": (["doctor"], ["--json"]),
    "diagnose": (["diagnose"], ["RECIPE", "--set", "--out", "--top", "quantization.accuracy", "--json"]),
    "cache": (["cache"], ["ls", "prune", "OPTCLI_CACHE_DIR", "--no-cache"]),
    "cache ls": (["cache", "ls"], ["stage"]),
    "cache prune": (["cache", "prune"], ["--older-than", "30d"]),
    "report": (["report"], ["schema"]),
    "report schema": (["report", "schema"], ["JSON Schema", "schema_version"]),
    "sweep": (["sweep"], ["SWEEP_FILE", "--executor", "--ray-address", "--resume", "--only", "worst cell"]),
}


def _all_commands() -> list[list[str]]:
    import typer.main

    from optcli.cli import app

    found = []

    def walk(command, path):
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_every_command_is_covered_by_the_help_tests():
    assert sorted(" ".join(["optcli", *path]).removeprefix("optcli ") for path in _all_commands()) == sorted(
        HELP
    )


@pytest.mark.parametrize("command", HELP, ids=str)
def test_help(cli, command):
    args, expected = HELP[command]
    code, out, _ = cli(*args, "--help")
    assert code == 0
    assert "Usage:" in out
    text = " ".join(out.split())
    for word in expected:
        assert word.lower() in text.lower(), f"{word!r} missing from `optcli {command} --help`"


def test_help_documents_debug_and_every_exit_code(cli):
    _, out, _ = cli("--help")
    text = " ".join(out.split())
    assert "--debug" in text
    assert "4 internal error" in text


def test_no_arguments_prints_usage(cli):
    code, out, err = cli()
    assert code == 2
    assert "Usage:" in out + err and "recipe" in out + err


def test_help_in_a_real_process():
    environ = {k: v for k, v in os.environ.items() if k != "OPTCLI_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "optcli", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--dry-run" in proc.stdout and "--set" in proc.stdout
    assert proc.stderr == ""


def test_version(cli):
    code, out, _ = cli("version")
    assert code == 0
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert lines["optcli"] == optcli.__version__
    for package in ("torch", "onnx", "onnxruntime", "numpy"):
        assert lines.get(package), package


# ----------------------------------------------------------------------------------------- schema


def test_recipe_schema_prints_json(cli):
    code, out, _ = cli("recipe", "schema")
    assert code == 0
    schema = json.loads(out)  # stdout holds the schema and nothing else
    assert schema == json.loads(json.dumps(recipe_schema()))
    assert schema["title"] == "optcli recipe"
    assert schema["properties"]["name"]["description"]


# ------------------------------------------------------------------------------------------- init


def test_recipe_init_writes_a_recipe_that_validates(cli, model_dir):
    target = model_dir / "r.yaml"
    code, _, err = cli(
        "recipe", "init", "--model", "models.py:make_two_layer", "--input", "x:batch,16", "-o", target
    )
    assert code == 0, err
    assert f"wrote {target}" in err
    assert f"optcli recipe validate {target}" in err
    data = yaml.safe_load(target.read_text())
    assert data["name"] == "make_two_layer"
    assert data["model"]["source"] == "models.py:make_two_layer"
    assert data["model"]["inputs"] == [{"name": "x", "shape": ["batch", 16], "dtype": "float32"}]
    assert data["quantization"]["precision"] == "int8"
    assert data["validate"]["data"] != data["quantization"]["calibration"]["data"]

    code, _, err = cli("recipe", "validate", target)
    assert code == 0, err
    assert f"ok {target}" in err
    recipe = load_recipe(target)
    assert recipe.model.dims["batch"].max == 64


def test_recipe_init_refuses_to_overwrite_without_force(cli, model_dir):
    target = model_dir / "r.yaml"
    args = ["recipe", "init", "--model", "models.py:make_two_layer", "--input", "x:batch,16", "-o", target]
    assert cli(*args)[0] == 0
    target.write_text(target.read_text() + "# my edits\n")
    before = target.read_text()

    code, _, err = cli(*args)
    assert code == 2
    assert f"--output: '{target}' exists; pass --force to overwrite it" in err
    assert "Traceback" not in err
    assert target.read_text() == before

    code, _, err = cli(*args, "--force", "--name", "renamed")
    assert code == 0, err
    assert "# my edits" not in target.read_text()
    assert yaml.safe_load(target.read_text())["name"] == "renamed"


def test_recipe_init_with_two_inputs_and_a_named_dim(cli, model_dir, monkeypatch):
    monkeypatch.chdir(model_dir)  # --model is relative to the current directory, as typed
    target = model_dir / "sub" / "dir" / "r.yaml"  # missing folders are created
    code, _, err = cli(
        "recipe",
        "init",
        "--model",
        "models.py:make_two_inputs",
        "-i",
        "tokens:batch,seq,8",
        "-i",
        "mask:batch,seq:float32",
        "-o",
        target,
    )
    assert code == 0, err
    recipe = load_recipe(target)
    assert [s.name for s in recipe.model.inputs] == ["tokens", "mask"]
    assert set(recipe.model.dims) == {"batch", "seq"}
    assert cli("recipe", "validate", target)[0] == 0


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        ("x", "--input: expected 'name:dim,dim,...[:dtype]', got 'x'"),
        ("x:batch,16:float99", "--input:"),
        ("x:batch,0", "static dimension 0 must be >= 1"),
        ("x:16,batch", "the first dim must be the batch dim 'batch'"),
    ],
)
def test_recipe_init_bad_input_flag(cli, model_dir, flag, expected):
    target = model_dir / "r.yaml"
    code, _, err = cli("recipe", "init", "--model", "models.py:make_two_layer", "--input", flag, "-o", target)
    assert code == 2
    assert expected in err
    assert "Traceback" not in err
    assert not target.exists()


def test_recipe_init_requires_model_and_input(cli, model_dir):
    code, _, err = cli("recipe", "init", "--input", "x:batch,16", "-o", model_dir / "r.yaml")
    assert code == 2
    assert "Missing option '--model'" in err


def test_starter_recipe_runs_end_to_end(cli, model_dir):
    target = model_dir / "r.yaml"
    assert (
        cli("recipe", "init", "--model", "models.py:make_two_layer", "-i", "x:batch,16", "-o", target)[0] == 0
    )
    out = model_dir / "run"
    quick = ["export.exporter=torchscript", "benchmark.iterations=3", "benchmark.warmup=1"]
    code, _, err = cli("run", target, "--out", out, "-q", *(a for s in quick for a in ("--set", s)))
    assert code in (0, 1), err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "finished"
    assert [e["label"] for e in report["engines"]] == ["pytorch-eager-fp32", "onnxruntime-int8"]
    assert [g["name"] for g in report["gates"]][:1] == ["export.cosine"]
    assert any(g["name"] == "validate.cosine" for g in report["gates"])


# --------------------------------------------------------------------------------------- validate


def test_recipe_validate_good(cli, write_recipe):
    path = write_recipe()
    code, _, err = cli("recipe", "validate", path)
    assert code == 0
    assert err == f"ok {path}"


def test_recipe_validate_lists_every_problem(cli, write_recipe):
    path = write_recipe(
        export="export:\n  opset: 99",
        passes="passes: [fp17]",
        benchmark="benchmark:\n  iterations: 0\n  colour: red",
    )
    lines = path.read_text().splitlines()
    code, _, err = cli("recipe", "validate", path)
    assert code == 2
    expected = [
        (lines.index("  opset: 99") + 1, "export.opset"),
        (lines.index("passes: [fp17]") + 1, "passes.0"),
        (lines.index("  iterations: 0") + 1, "benchmark.iterations"),
        (lines.index("  colour: red") + 1, "benchmark.colour"),
    ]
    for line, field in expected:
        assert f"error: {path}:{line}: field '{field}':" in err
    assert err.count("error: ") == len(expected)
    assert "ok " not in err
    assert "Traceback" not in err


def test_recipe_validate_bad_yaml_and_missing_file(cli, write_recipe, tmp_path):
    path = write_recipe("name: tiny\nmodel: [\n")
    code, _, err = cli("recipe", "validate", path)
    assert code == 2
    assert f"error: {path}:" in err and "invalid YAML" in err

    code, _, err = cli("recipe", "validate", tmp_path / "nope.yaml")
    assert code == 2
    assert f"error: {tmp_path / 'nope.yaml'}: recipe file does not exist" in err


def test_recipe_validate_with_overrides(cli, write_recipe):
    path = write_recipe()
    code, _, err = cli(
        "recipe", "validate", path, "--set", "quantization.precision=fp8", "-s", "export.opset=17"
    )
    assert code == 0, err
    assert f"ok {path}" in err

    code, _, err = cli("recipe", "validate", path, "--set", "export.opset=12")
    assert code == 2
    assert f"error: {path} (--set export.opset): " in err
    assert "field 'export.opset': Input should be greater than or equal to 13 (got 12)" in err


def test_recipe_validate_with_overrides_lists_every_problem(cli, write_recipe):
    path = write_recipe(export="export:\n  opset: 99", passes="passes: [fp17]")
    code, _, err = cli("recipe", "validate", path, "--set", "benchmark.iterations=5")
    assert code == 2
    assert "field 'export.opset'" in err and "field 'passes.0'" in err


def test_examples_in_run_help_are_valid(cli):
    example = REPO / "recipes" / "example.yaml"
    code, _, err = cli(
        "recipe", "validate", example, "--set", "quantization.precision=fp8", "--set", "build.0.threads=4"
    )
    assert code == 0, err


# ---------------------------------------------------------------------------------------- dry run


def test_run_dry_run_prints_the_plan_and_runs_nothing(cli, write_recipe, model_dir, monkeypatch):
    monkeypatch.chdir(model_dir)
    path = write_recipe(
        passes="passes: [onnxscript_optimize, shape_inference]",
        build="build:\n  - {engine: onnxruntime, name: ort-fp32, artifact: optimized}\n"
        "  - engine: onnxruntime",
    )
    code, out, err = cli("run", path, "--dry-run", "--set", "quantization.precision=int8")
    assert code == 0, err
    resolved = json.loads(out)
    assert resolved["name"] == "tiny"
    assert resolved["validate"]["samples"] == 32  # aliases as in the recipe, not validate_
    assert resolved["quantization"]["precision"] == "int8"
    assert resolved["quantization"]["calibration"]["method"] == "auto"
    assert resolved["benchmark"]["iterations"] == 3
    assert (
        "plan: load, export (dynamo), pass onnxscript_optimize, pass shape_inference, "
        "quantize int8 (onnxruntime), build ort-fp32, onnxruntime, validate, benchmark batch [1] "
        f"-> {Path('runs') / 'tiny'}" in err
    )
    assert not (model_dir / "runs").exists()
    assert sorted(p.name for p in model_dir.iterdir()) == ["models.py", "recipe.yaml"]


def test_run_dry_run_respects_out_and_disabled_stages(cli, write_recipe, model_dir):
    path = write_recipe(
        validate="validate: {enabled: false}",
        benchmark="benchmark: {enabled: false}",
        quantization="quantization: {precision: fp32}",
    )
    out = model_dir / "elsewhere"
    code, _, err = cli("run", path, "--dry-run", "--out", out)
    assert code == 0
    assert f"plan: load, export (dynamo), build onnxruntime -> {out}" in err
    assert not out.exists()


# ---------------------------------------------------------------------------------- run with --set


def test_run_fp8_override_on_the_tiny_recipe(cli, write_recipe, model_dir):
    import onnx

    out = model_dir / "fp8"
    code, _, err = cli(
        "run",
        write_recipe(),
        "--out",
        out,
        "--set",
        "quantization.precision=fp8",
        "--set",
        "quantization.calibration.samples=32",
    )
    assert code in (0, 1), err
    assert ("PASS" if code == 0 else "FAIL") in err
    assert "onnxruntime-fp8" in err  # the terminal tables
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "finished"
    assert report["verdict"] == ("pass" if code == 0 else "fail")
    assert report["recipe"]["resolved"]["quantization"]["precision"] == "fp8"
    engines = report["validation"]["engines"]
    assert [(e["engine"], e["precision"]) for e in engines] == [("onnxruntime-fp8", "fp8")]
    assert report["validation"]["samples"] == 32
    quantize = next(s for s in report["stages"] if s["name"] == "quantize:fp8")
    assert quantize["details"]["calibration_samples"] == 32
    assert (out / "report.md").is_file()
    model = onnx.load(str(out / "quantized.onnx"))
    fp8 = onnx.TensorProto.FLOAT8E4M3FN
    assert any(init.data_type == fp8 for init in model.graph.initializer)
    assert not list(out.glob(".staging-*"))


def test_run_quiet_prints_only_the_verdict(cli, write_recipe, model_dir):
    out = model_dir / "q"
    code, out_text, err = cli(
        "run", write_recipe(), "--out", out, "-q", "--set", "export.exporter=torchscript"
    )
    assert code == 0, err
    assert err == f"PASS report: {out / 'report.json'} deploy: {out / 'exported.onnx'} (onnxruntime-fp32)"
    assert out_text == ""
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "pass"
    assert report["recipe"]["resolved"]["export"]["exporter"] == "torchscript"
