"""Loading a recipe never lies or hangs: bounded YAML aliases, duplicate keys, every problem listed
with "did you mean", validate/dry-run run the run's preflight, init writes paths that resolve, and
cross-field ranges (class_output, benchmark batch sizes) are refused naming the field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe_text

from optcli.errors import RecipeError
from optcli.recipe import load_recipe, parse_recipe
from optcli.recipe.problems import MAX_LISTED
from optcli.recipe.yaml_source import ALIAS_NODE_BUDGET

torch = pytest.importorskip("torch")

# The classic 9-level "billion laughs": 9**9 strings once expanded.
ALIAS_BOMB = (
    "\n".join(
        ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        + [f"{b}: &{b} [{','.join(['*' + a] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
    )
    + "\n"
)

TRT_BUILD = "build:\n  - {engine: onnxruntime}\n  - {name: trt, engine: tensorrt}"
FILES_VALIDATION = "validate: {samples: 32, batch_size: 16, data: {type: files, path: data/val_*.npz}}"


def optcli(*args, cwd: Path, timeout: float = 120) -> tuple[int, str, str]:
    """`python -m optcli ARGS` in a real process; stderr with rich's line wrapping undone."""
    env = {k: v for k, v in os.environ.items() if k != "OPTCLI_DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "optcli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return proc.returncode, proc.stdout, " ".join(proc.stderr.split())


def line_of(path: Path, needle: str, start: int = 1) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if number >= start and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text and "internal error" not in text, text


# ------------------------------------------------------------------------------------ YAML itself


def test_alias_bomb_is_refused_in_seconds(model_dir):
    path = model_dir / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 400
    start = time.monotonic()
    code, _, err = optcli("recipe", "validate", path, cwd=model_dir, timeout=30)
    assert time.monotonic() - start < 30
    assert code == 2, err
    assert f"error: {path}:" in err and f"aliases expand past {ALIAS_NODE_BUDGET} nodes" in err
    line = int(err.split(f"{path}:")[1].split(":")[0])
    assert 2 <= line <= 9  # the alias that crossed the budget, not line 1
    assert_no_traceback(err)


def test_alias_bomb_in_a_set_value_and_recursive_aliases_are_refused(write_recipe):
    path = write_recipe()
    value = ALIAS_BOMB.replace("\n", ", ").rstrip(", ")
    with pytest.raises(RecipeError, match="aliases expand past"):
        load_recipe(path, [f"description={{{value}}}"])
    # A self-referencing alias used to reach the line mapper as an infinite structure.
    path = write_recipe(tiny_recipe_text(description="description: &loop [1, *loop]"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert info.value.line == line_of(path, "&loop") and "recursive" in info.value.message


def test_deep_nesting_is_refused_not_a_crash(write_recipe):
    path = write_recipe(tiny_recipe_text(description="description: " + "[" * 3000 + "]" * 3000))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert "nests deeper than" in info.value.message and info.value.line == line_of(path, "description:")


def test_ordinary_anchors_and_merge_keys_still_work(tiny_recipe):
    recipe = tiny_recipe(
        build="build:\n  - &ort {engine: onnxruntime, name: a, threads: 2}\n  - {<<: *ort, name: b}",
        benchmark="benchmark: {batch_sizes: &sizes [1, 4], warmup: 1, iterations: 3}",
        description="description: plain",
    )
    assert [(e.name, e.threads) for e in recipe.build] == [("a", 2), ("b", 2)]
    assert recipe.benchmark.batch_sizes == [1, 4]


def test_duplicate_keys_name_both_lines(cli, write_recipe):
    path = write_recipe(
        quantization="quantization:\n  precision: int8\n  calibration: {samples: 8}\n  precision: fp8"
    )
    first = line_of(path, "precision: int8")
    second = line_of(path, "precision: fp8")
    expected = f"{path}:{second}: duplicate key 'precision' (first at line {first})"
    code, _, err = optcli("recipe", "validate", path, cwd=path.parent, timeout=60)
    assert code == 2 and f"error: {expected}" in err, err
    code, _, err = cli("run", path, "--dry-run")
    assert code == 2 and f"error: {expected}" in err, err
    # In a flow mapping on one line too, and in a --set value.
    path = write_recipe(tiny_recipe_text(benchmark="benchmark: {warmup: 1, warmup: 2}"))
    with pytest.raises(RecipeError, match=r"duplicate key 'warmup' \(first at line \d+\)"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="duplicate key 'seed'"):
        load_recipe(write_recipe(), ["validate.data={type: synthetic, seed: 1, seed: 2}"])


# ------------------------------------------------------------------------- problems, all of them


def test_run_lists_every_problem_unknown_fields_first_with_did_you_mean(write_recipe):
    model = "model:\n  source: models.py:make_two_layer\n  inptus:\n    - {name: x, shape: [batch, 16]}"
    path = write_recipe(model=model, export="export: {opset: 99}")
    code, _, err = optcli("run", path, cwd=path.parent, timeout=60)
    assert code == 2
    at = f"error: {path}:{line_of(path, 'inptus')}: field 'model.inptus':"
    assert f"{at} unknown field; did you mean 'inputs'?" in err, (
        err
    )  # first: the typo is why 'inputs' is missing
    assert f"{path}:{line_of(path, 'model:')}: field 'model.inputs': required field is missing" in err
    assert f"{path}:{line_of(path, 'opset: 99')}: field 'export.opset'" in err
    assert "and 2 more problems" in err
    assert_no_traceback(err)


def test_at_most_ten_problems_are_listed(write_recipe):
    extra = "\n".join(f"  colour{i}: red" for i in range(MAX_LISTED + 3))
    path = write_recipe(export=f"export:\n  opset: 18\n{extra}")
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    lines = info.value.message.splitlines()
    assert len(lines) == MAX_LISTED + 1  # ten problems and the count of the rest
    assert lines[-1].strip() == "... and 3 more"
    assert info.value.field == "export.colour0" and len(info.value.problems) == MAX_LISTED + 3


@pytest.mark.parametrize(
    ("sections", "field", "suggestion"),
    [
        ({"export": "export: {opsett: 17}"}, "export.opsett", "did you mean 'opset'?"),
        ({"build": "build:\n  - {engine: onnxruntime, threadz: 2}"}, "build.0.threadz", "'threads'"),
        ({"build": "build:\n  - {engine: tensorrtx}"}, "build.0", "did you mean 'tensorrt'?"),
        ({"passes": "passes: [{name: ort_optimize, levle: all}]"}, "passes.0.levle", "'level'"),
        ({"validate": "validate: {data: {type: synthetic, sed: 3}}"}, "validate.data.sed", "'seed'"),
        ({"quantization": "quantization: {precision: int4}"}, "quantization.precision", "'int8'"),
        ({"validat": "validat: {samples: 8}"}, "validat", "did you mean 'validate'?"),
    ],
)
def test_did_you_mean(write_recipe, sections, field, suggestion):
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(tiny_recipe_text(**sections)))
    assert info.value.field == field
    assert suggestion in info.value.message


def test_no_suggestion_for_a_key_like_nothing(write_recipe):
    with pytest.raises(RecipeError) as info:
        load_recipe(write_recipe(description="zzz: 1"))
    assert "did you mean" not in info.value.message and "optcli recipe schema" in info.value.message


# ------------------------------------------------------------------- validate / dry-run preflight


def test_missing_data_file_fails_validate_and_dry_run_unless_offline(cli, write_recipe):
    path = write_recipe(validate=FILES_VALIDATION)
    expected = "validate.data.path: no file matches 'data/val_*.npz'"
    code, _, err = cli("recipe", "validate", path)
    assert code == 2 and f"error: {expected}" in err, err
    assert str(path.parent / "data" / "val_*.npz") in err  # the path it looked for
    assert "ok " not in err

    code, out, err = cli("run", path, "--dry-run")
    assert code == 2 and expected in err, err
    assert json.loads(out)["validate"]["data"]["path"] == "data/val_*.npz"  # the plan is still printed
    assert "plan: load, export (dynamo)" in err and "preflight: 1 problem(s), exit 2" in err

    code, _, err = cli("recipe", "validate", path, "--offline")
    assert code == 0 and f"ok {path} (schema only: --offline)" in err
    code, _, err = cli("run", path, "--dry-run", "--offline")
    assert code == 0 and "preflight: skipped (--offline)" in err

    (path.parent / "data").mkdir()
    import numpy as np

    np.savez(path.parent / "data" / "val_0.npz", x=np.zeros((4, 16), np.float32))
    code, _, err = cli("recipe", "validate", path)
    assert code == 0 and err == f"ok {path}"
    code, _, err = cli("run", path, "--dry-run")
    assert code == 0 and "preflight: ok" in err


def test_offline_only_applies_to_dry_run(cli, write_recipe):
    code, _, err = cli("run", write_recipe(), "--offline")
    assert code == 2 and "--offline: only applies with --dry-run" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_unavailable_engine_exits_3_with_the_fix_in_validate_and_dry_run(cli, write_recipe):
    path = write_recipe(build=TRT_BUILD)
    code, _, err = optcli("recipe", "validate", path, cwd=path.parent, timeout=60)
    assert code == 3, err
    assert "error: build.1 ('trt') cannot run on this machine" in err and "hint: pip install tensorrt" in err
    assert "ok " not in err
    assert_no_traceback(err)
    code, _, err = cli("run", path, "--dry-run")
    assert code == 3 and "build.1 ('trt')" in err and "preflight: 1 problem(s), exit 3" in err
    assert cli("recipe", "validate", path, "--offline")[0] == 0
    code, _, err = cli("recipe", "validate", path, "--set", "skip_unavailable=true")
    assert code == 0 and "note: trt will be skipped" in err and f"ok {path}" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
def test_bad_input_outranks_a_missing_engine(cli, write_recipe):
    path = write_recipe(build=TRT_BUILD, validate=FILES_VALIDATION)
    code, _, err = cli("recipe", "validate", path)
    assert code == 2  # fix the recipe first; the engine problem is listed too
    assert err.index("validate.data.path") < err.index("build.1 ('trt')")


@pytest.mark.parametrize(
    ("model_lines", "expected"),
    [
        ("  source: nope.py:make", "model.source: file '{dir}/nope.py' does not exist"),
        ("  source: no_such_pkg_xyz.mod:make", "model.source: cannot import module 'no_such_pkg_xyz.mod'"),
        ("  source: weights.pt2", "model.source: file '{dir}/weights.pt2' does not exist"),
        (
            "  source: models.py:make_two_layer\n  checkpoint: ckpt/w.pt",
            "model.checkpoint: file '{dir}/ckpt/w.pt' does not exist",
        ),
    ],
)
def test_files_and_modules_the_model_names_are_checked(cli, write_recipe, model_dir, model_lines, expected):
    model = f"model:\n{model_lines}\n  inputs:\n    - {{name: x, shape: [batch, 16]}}"
    path = write_recipe(model=model)
    code, _, err = cli("recipe", "validate", path)
    assert code == 2 and expected.format(dir=model_dir) in err, err


def test_callable_data_file_and_image_folder_are_checked(cli, write_recipe):
    path = write_recipe(
        quantization="quantization:\n  calibration:\n    data: {type: callable, callable: data/c.py:batches}",
        validate="validate: {data: {type: images, path: images/}}",
    )
    code, _, err = cli("recipe", "validate", path)
    assert code == 2, err
    assert "quantization.calibration.data.callable: file" in err and "c.py' does not exist" in err
    assert "validate.data.path: no images" in err


def test_validate_runs_no_user_code(cli, write_recipe, model_dir):
    (model_dir / "models.py").write_text(
        (model_dir / "models.py").read_text() + "\nopen(__file__ + '.imported', 'w').close()\n"
    )
    assert cli("recipe", "validate", write_recipe())[0] == 0
    assert not (model_dir / "models.py.imported").exists()
    assert not (model_dir / "__pycache__").exists()


def test_the_run_stops_on_a_missing_data_file_before_export(cli, write_recipe, model_dir):
    out = model_dir / "out"
    code, _, err = cli("run", write_recipe(validate=FILES_VALIDATION), "--out", out)
    assert code == 2 and "validate.data.path: no file matches 'data/val_*.npz'" in err
    assert not (out / "exported.onnx").exists()


# ------------------------------------------------------------------------------------------ init


def test_init_into_a_subfolder_writes_paths_relative_to_the_recipe(cli, model_dir, monkeypatch):
    monkeypatch.chdir(model_dir)
    code, _, err = cli(
        "recipe", "init", "--model", "models.py:make_two_layer", "-i", "x:batch,16", "-o", "sub/dir/r.yaml"
    )
    assert code == 0, err
    target = model_dir / "sub" / "dir" / "r.yaml"
    assert yaml.safe_load(target.read_text())["model"]["source"] == "../../models.py:make_two_layer"
    recipe = load_recipe(target)
    assert (recipe.base_dir / "../../models.py").resolve() == (model_dir / "models.py").resolve()

    elsewhere = model_dir / "sub"  # from another folder: paths start at the recipe, not the cwd
    code, _, err = optcli("recipe", "validate", target, cwd=elsewhere, timeout=60)
    assert code == 0 and f"ok {target}" in err, err
    code, out, err = optcli("run", target, "--dry-run", cwd=elsewhere, timeout=60)
    assert code == 0 and "preflight: ok" in err, err
    assert json.loads(out)["model"]["source"] == "../../models.py:make_two_layer"


def test_init_keeps_absolute_and_recipe_relative_paths_and_refuses_missing_files(cli, model_dir, tmp_path):
    absolute = f"{model_dir / 'models.py'}:make_two_layer"
    target = tmp_path / "a" / "r.yaml"
    assert cli("recipe", "init", "--model", absolute, "-i", "x:batch,16", "-o", target)[0] == 0
    assert yaml.safe_load(target.read_text())["model"]["source"] == absolute

    target = model_dir / "r.yaml"  # models.py is beside the recipe (the cwd is elsewhere)
    assert (
        cli("recipe", "init", "--model", "models.py:make_two_layer", "-i", "x:batch,16", "-o", target)[0] == 0
    )
    assert yaml.safe_load(target.read_text())["model"]["source"] == "models.py:make_two_layer"

    target = model_dir / "new" / "r.yaml"
    code, _, err = cli("recipe", "init", "--model", "absent.py:make", "-i", "x:batch,16", "-o", target)
    assert code == 2 and "--model: file 'absent.py' does not exist" in err
    assert not target.exists()

    code, _, err = cli(
        "recipe", "init", "--model", "optcli.examples.digits:load_model", "-i", "x:batch,64", "-o", target
    )
    assert code == 0 and "source: optcli.examples.digits:load_model" in target.read_text()


# ---------------------------------------------------------------------------- cross-field ranges


def test_class_output_against_declared_outputs(cli, write_recipe):
    model = (
        "model:\n  source: models.py:make_two_layer\n  inputs:\n    - {name: x, shape: [batch, 16]}\n"
        "  outputs: [logits]"
    )
    path = write_recipe(model=model, validate="validate: {samples: 32, class_output: 3}")
    code, _, err = cli("recipe", "validate", path)
    assert code == 2
    at = f"{path}:{line_of(path, 'class_output: 3')}: field 'validate.class_output':"
    assert f"{at} index 3 is out of range: model.outputs names 1 ['logits']" in err, err

    path = write_recipe(model=model, validate="validate: {samples: 32, class_output: scores}")
    code, _, err = cli("recipe", "validate", path)
    assert code == 2 and "field 'validate.class_output': 'scores' is not an output name" in err, err
    assert "['logits']" in err

    recipe = load_recipe(write_recipe(model=model, validate="validate: {class_output: logits}"))
    assert recipe.validate_.class_output == 0  # a name becomes the index the stages use
    with pytest.raises(RecipeError, match="must be an output index >= 0"):
        load_recipe(write_recipe(validate="validate: {class_output: -1}"))


def test_class_output_beyond_the_exported_outputs_stops_before_validation(cli, write_recipe, model_dir):
    path = write_recipe(validate="validate: {samples: 32, batch_size: 16, class_output: 5}")
    assert cli("recipe", "validate", path)[0] == 0  # the outputs are unknown until export
    out = model_dir / "out"
    code, _, err = cli("run", path, "--out", out, "-q", "--set", "export.exporter=torchscript")
    assert code == 2, err
    assert (
        "validate.class_output: 5 is not an output of the exported model, which has 1 output (output_0)"
        in err
    )
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "error"
    assert "validate" not in [stage["name"] for stage in report["stages"]]


def test_benchmark_batch_above_the_batch_dim_max(cli, write_recipe):
    path = write_recipe(benchmark="benchmark:\n  batch_sizes: [1, 64]\n  iterations: 3")
    code, _, err = cli("recipe", "validate", path)
    assert code == 2
    at = f"{path}:{line_of(path, 'batch_sizes: [1, 64]')}: field 'benchmark.batch_sizes':"
    assert f"{at} batch size 64 is above model.dims.batch.max (32)" in err, err

    code, _, err = cli("run", write_recipe(), "--dry-run", "--set", "benchmark.batch_sizes=[128]")
    assert code == 2 and "(--set benchmark.batch_sizes): field 'benchmark.batch_sizes'" in err, err
    code, _, err = cli("run", write_recipe(), "--dry-run", "--set", "model.dims.batch.min=2")
    assert code == 2 and "batch size 1 is below model.dims.batch.min (2)" in err, err
    assert parse_recipe(
        tiny_recipe_text(benchmark="benchmark: {batch_sizes: [1, 32]}")
    )  # the max itself is fine
