"""CLI habits: --version, -h, choices and flags in help, completion, --set gate strings, --json,
GitHub annotations of recipe errors, the verdict and deploy lines, --verbose. The --json run in a
real process, the heartbeat and gate annotations are checked on the CI example's runs
(test_ci_example.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import optcli
from optcli.cli_output import deploy_artifact

FAST_EXPORT = "export: {exporter: torchscript}"


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "OPTCLI_DEBUG", "OPTCLI_HEART"))
    }
    env.pop("OPTCLI_VERBOSE", None)
    return {**env, **extra}


def optcli_process(*args, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "optcli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=clean_env(**env),
    )


@pytest.fixture
def raw_cli(monkeypatch, capsys):
    """Like the `cli` fixture, but stderr as printed (line by line), for line-exact checks."""
    for name in ("OPTCLI_DEBUG", "GITHUB_ACTIONS", "GITHUB_WORKSPACE", "OPTCLI_VERBOSE"):
        monkeypatch.delenv(name, raising=False)
    from optcli.cli import main

    def invoke(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["optcli", *map(str, args)])
        with pytest.raises(SystemExit) as info:
            main()
        out, err = capsys.readouterr()
        return info.value.code, out, err

    return invoke


def commands() -> list[list[str]]:
    import typer.main

    from optcli.cli import app

    found: list[list[str]] = []

    def walk(command, path):
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


# ------------------------------------------------------------------------ version, help, completion


def test_version_flag_in_a_real_process(tmp_path):
    proc = optcli_process("--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"optcli {optcli.__version__}\n"
    assert proc.stderr == ""


@pytest.mark.parametrize("path", commands(), ids=lambda p: " ".join(p) or "optcli")
def test_short_help_and_no_bool_placeholder_on_every_command(raw_cli, path):
    code, out, _ = raw_cli(*path, "-h")
    assert code == 0
    assert "Usage:" in out and "--help" in out
    assert "<bool>" not in out, "a flag is shown as taking a value"


def test_run_help_lists_the_target_choices_and_shows_flags_as_flags(raw_cli):
    code, out, _ = raw_cli("run", "-h")
    assert code == 0
    assert "<cpu|auto|gpu>" in out
    flags = {line.split()[1] for line in out.splitlines() if line.startswith("│ --")}
    assert {"--quiet", "--dry-run", "--json", "--no-cache"} <= flags
    quiet = next(line for line in out.splitlines() if line.startswith("│ --quiet"))
    assert quiet.split()[2:4] == ["-q", "Only"], quiet  # no type column between the names and the help


def test_bad_target_choice_exits_2_listing_the_choices(raw_cli, write_recipe):
    code, _, err = raw_cli("run", write_recipe(), "--target", "tpu")
    assert code == 2
    assert "'tpu' is not one of 'cpu', 'auto', 'gpu'" in err
    assert "Traceback" not in err


def test_shell_completion_is_on(tmp_path):
    entry_point = Path(sys.executable).with_name("optcli")  # completion keys on the program's name
    env = clean_env(_OPTCLI_COMPLETE="complete_bash", COMP_WORDS="optcli ru", COMP_CWORD="1")
    proc = subprocess.run([entry_point], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["run"]


# ------------------------------------------------------------------------------------ --set values


def test_set_gate_expression_needs_no_yaml_quoting(raw_cli, write_recipe):
    code, out, err = raw_cli(
        "run", write_recipe(), "--dry-run", "--offline", "--set", "validate.gates.cosine=>= 0.98"
    )
    assert code == 0, err
    assert json.loads(out)["validate"]["gates"] == {"cosine": ">= 0.98"}


def test_set_value_that_is_not_yaml_and_not_valid_for_the_field(raw_cli, write_recipe):
    code, _, err = raw_cli("run", write_recipe(), "--dry-run", "--offline", "--set", "build=[x")
    err = " ".join(err.split())
    assert code == 2
    assert "field 'build': Input should be a valid list (got '[x')" in err
    assert "--set value of 'build' is not valid YAML" in err
    code, _, err = raw_cli("run", write_recipe(), "--dry-run", "--set", "validate.gates.cosine=>= banana")
    assert code == 2
    assert "field 'validate.gates" in err and "gate '>= banana' is not '<op> <number>'" in " ".join(
        err.split()
    )


# ------------------------------------------------------------------- verdict lines (in-process runs)


def test_quiet_line_names_the_failed_gate(raw_cli, write_recipe, model_dir):
    out = model_dir / "q"
    path = write_recipe(export=FAST_EXPORT)
    code, stdout, err = raw_cli("run", path, "--out", out, "-q", "--set", "validate.gates.max_abs=< 0")
    assert code == 1
    assert stdout == ""
    [line] = err.splitlines()
    assert line.startswith("FAIL (1 gate(s) failed): validate.max_abs on onnxruntime-fp32 = ")
    assert line.endswith(f", needs < 0  report: {out / 'report.json'}")


def test_passing_run_ends_with_the_artifact_to_deploy(raw_cli, write_recipe, model_dir):
    out = model_dir / "p"
    code, _, err = raw_cli("run", write_recipe(export=FAST_EXPORT), "--out", out)
    assert code == 0, err
    *_, verdict, last = err.splitlines()
    assert verdict == f"PASS  report: {out / 'report.json'}"
    assert last == f"deploy: {out / 'exported.onnx'} (onnxruntime-fp32)"
    assert (out / "exported.onnx").is_file()


def test_deploy_artifact_of_a_target_run_is_the_chosen_candidate():
    engines = [
        {"label": "pytorch-eager-fp32", "baseline": True},
        {"label": "ort-fp32", "baseline": False, "path": "r/optimized.onnx"},
        {"label": "ort-int8", "baseline": False, "path": "r/quantized.onnx"},
    ]
    chosen = {"engines": engines, "selection": {"target": "cpu", "chosen": "ort-int8"}}
    assert deploy_artifact(chosen) == {"path": "r/quantized.onnx", "engine": "ort-int8"}
    assert deploy_artifact({"engines": engines, "selection": {"target": "cpu", "chosen": None}}) is None
    assert deploy_artifact({"engines": engines, "selection": {}}) is None  # two files: no single answer
    same = [engines[0], engines[1], {**engines[2], "path": "r/optimized.onnx", "label": "ort-4t"}]
    assert deploy_artifact({"engines": same, "selection": {}})["path"] == "r/optimized.onnx"


# ------------------------------------------------------------------- recipe errors: JSON, annotations

BAD_RECIPE = """\
name: bad
model:
  source: models.py:make_two_layer
  inputs: [{name: x, shape: [batch, 16]}]
benchmark: {iterations: many}
"""


def test_recipe_errors_become_annotations_with_file_and_line(raw_cli, write_recipe, monkeypatch, model_dir):
    path = write_recipe(BAD_RECIPE)
    code, _, err = raw_cli("recipe", "validate", path)
    assert code == 2 and "::error" not in err  # not in GitHub Actions: no annotations
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    expected = (
        f"::error file={path},line=5,title=optcli recipe::field 'benchmark.iterations': "
        "Input should be a valid integer, unable to parse string as an integer (got 'many')"
    )
    code, _, err = raw_cli("recipe", "validate", path)
    assert code == 2
    assert expected in err.splitlines()
    code, _, err = raw_cli("run", path)  # the same through the run's error path
    assert code == 2
    assert expected in err.splitlines()
    monkeypatch.setenv("GITHUB_WORKSPACE", str(model_dir))  # paths from the repository root
    code, _, err = raw_cli("run", path)
    assert expected.replace(f"file={path},", "file=recipe.yaml,") in err.splitlines()


def test_recipe_validate_json(raw_cli, write_recipe):
    path = write_recipe(BAD_RECIPE)
    code, out, err = raw_cli("recipe", "validate", path, "--json")
    assert code == 2
    summary = json.loads(out)
    assert summary["verdict"] == "error" and summary["exit_code"] == 2
    assert [(p["file"], p["line"], p["field"]) for p in summary["problems"]] == [
        (str(path), 5, "benchmark.iterations")
    ]
    assert "error:" in err
    code, out, _ = raw_cli("recipe", "validate", write_recipe(), "--json", "--offline")
    assert code == 0
    assert json.loads(out) | {"recipe": None} == {
        "command": "recipe validate",
        "verdict": "pass",
        "exit_code": 0,
        "recipe": None,
        "problems": [],
        "error": None,
    }


def test_json_summary_of_a_command_that_stops_with_an_error(raw_cli, tmp_path):
    code, out, err = raw_cli("run", tmp_path / "missing.yaml", "--json")
    assert code == 2
    summary = json.loads(out)
    assert summary["verdict"] == "error" and summary["exit_code"] == 2 and summary["report"] is None
    assert summary["error"]["kind"] == "user_input"
    assert "missing.yaml: recipe file does not exist" in summary["error"]["message"]
    assert "recipe file does not exist" in err
    code, out, _ = raw_cli("run", tmp_path / "missing.yaml", "--json", "--bogus")
    assert code == 2
    assert json.loads(out)["error"]["kind"] == "usage"


def test_diagnose_json(raw_cli, write_recipe, model_dir):
    path = write_recipe(
        export=FAST_EXPORT,
        quantization="quantization: {precision: int8, calibration: {samples: 16, batch_size: 8}}",
        validate="validate: {samples: 16, batch_size: 8}",
    )
    code, out, err = raw_cli("diagnose", path, "--out", model_dir / "d", "--json", "--top", "1")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["command"] == "diagnose" and summary["exit_code"] == 0
    assert summary["report"] == str(model_dir / "d" / "report.json")
    assert [layer["module"] for layer in summary["layers"]] in (["fc1"], ["fc2"])
    assert "report:" in err


# ------------------------------------------------------------------------------------------ --verbose


def test_verbose_lets_silenced_loggers_through(raw_cli, write_recipe, monkeypatch):
    from optcli.quiet import quiet_loggers

    monkeypatch.setenv("OPTCLI_VERBOSE", "0")  # restored after the test
    code, _, _ = raw_cli("recipe", "validate", write_recipe(), "--offline", "--verbose")  # after the command
    assert code == 0
    assert os.environ["OPTCLI_VERBOSE"] == "1"
    noisy = logging.getLogger("optcli-test-noisy")
    with quiet_loggers("optcli-test-noisy"):
        assert noisy.isEnabledFor(logging.WARNING)  # not raised to ERROR
    monkeypatch.setenv("OPTCLI_VERBOSE", "0")
    with quiet_loggers("optcli-test-noisy"):
        assert not noisy.isEnabledFor(logging.WARNING)
