"""examples/ci/github-actions.yml, played here: its `run:` steps' optcli commands run with bash on a
tiny recipe (a push to main, then a pull request against main's stored report), and each `uses:`
step is checked for the files it needs. The same runs prove what optcli prints in CI: --json
stdout is one object, human output on stderr, heartbeat lines, gate annotations."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[1] / "examples" / "ci" / "github-actions.yml"
EXPRESSION = re.compile(r"\$\{\{\s*steps\.(\w+)\.outputs\.(\w+)(?:\s*\|\|\s*(\S+))?\s*\}\}")
HEARTBEAT = re.compile(r"^\.\.\. (\S+) still running \((\d+)s\)$")
SLOW_FACTORY = """

def make_slow_two_layer():
    import time
    time.sleep(1.2)
    return make_two_layer()
"""
COSINE_FAILS = "validate.cosine on onnxruntime-fp32 = 1, needs > 1.5"


def _condition(text: str | None, event: str, root: Path) -> bool:
    """The `if:` expressions the example uses; any other one fails the test (teach it here first)."""
    if text is None:
        return True
    result = True
    for term in (t.strip() for t in text.split("&&")):
        if term == "always()":
            continue
        if match := re.fullmatch(r"github\.event_name == '(\w+)'", term):
            result &= match.group(1) == event
        elif match := re.fullmatch(r"hashFiles\('([^']+)'\) != ''", term):
            result &= (root / match.group(1)).is_file()
        else:
            raise AssertionError(f"the test does not know the condition {term!r}")
    return result


def _outputs(path: Path) -> dict[str, str]:
    text = path.read_text() if path.is_file() else ""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _play(workflow: dict, event: str, root: Path, env: dict[str, str]) -> dict[str, object]:
    """Run one event's steps in `root`, as the runner would after a checkout: `run:` scripts that call
    optcli with bash -e (every later step runs, as the example's always() conditions ask), and the
    `uses:` steps checked for what they need (files to store, upload and post)."""
    done: dict[str, object] = {}
    outputs: dict[str, dict[str, str]] = {}
    for index, step in enumerate(workflow["jobs"]["optimize"]["steps"]):
        if not _condition(step.get("if"), event, root):
            continue
        name = step.get("id") or step.get("name") or step["uses"]
        uses = step.get("uses", "").split("@")[0]
        if "run" in step:
            script = step["run"]
            if "pip install" in script:  # never here: this environment is already installed
                continue
            assert "optcli" in script, f"step {name!r} is neither optcli nor the install"
            script = EXPRESSION.sub(
                lambda m: outputs.get(m.group(1), {}).get(m.group(2)) or m.group(3) or "", script
            )
            assert "${{" not in script, script
            output_file = root / f".output-{index}"
            done[name] = subprocess.run(
                ["bash", "-e", "-c", script],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=300,
                env={**env, "GITHUB_OUTPUT": str(output_file)},
            )
            outputs[name] = _outputs(output_file)
        elif uses in ("actions/cache/save", "actions/cache/restore"):
            assert (root / step["with"]["path"]).is_file(), f"{uses}: {step['with']['path']} missing"
        elif uses == "actions/upload-artifact":
            for path in step["with"]["path"].split():
                assert (root / path).is_file(), f"upload of {path}: not written by the run"
        elif uses == "actions/github-script":
            script = step["with"]["script"]
            posted = re.search(r"readFileSync\('([^']+)'", script).group(1)
            marker = re.search(r"body\.match\(/(.+?)/\)", script).group(1)
            assert re.search(marker, (root / posted).read_text()), f"{posted} lacks the comment marker"
            done[name] = posted
        else:
            assert uses in ("actions/checkout", "actions/setup-python"), f"unknown step {uses}"
    return done


@pytest.fixture(scope="module")
def ci(tmp_path_factory):
    """Both events of the example on a recipe whose model takes 1.2 s to load (the heartbeat every
    0.2 s shows) and whose cosine gate no engine passes (annotations, exit 1)."""
    from conftest import MODEL_FILE, tiny_recipe_text

    repo = tmp_path_factory.mktemp("model-repo")
    (repo / "models.py").write_text(MODEL_FILE + SLOW_FACTORY)
    text = tiny_recipe_text(
        export="export: {exporter: torchscript}",
        validate='validate: {samples: 32, batch_size: 16, gates: {cosine: "> 1.5"}}',
    )
    (repo / "recipe.yaml").write_text(text.replace("make_two_layer", "make_slow_two_layer"))
    root = tmp_path_factory.mktemp("checkout")
    workflow = yaml.safe_load(WORKFLOW.read_text())
    dropped = ("GITHUB_", "OPTCLI_DEBUG", "OPTCLI_HEARTBEAT", "OPTCLI_VERBOSE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(workflow["env"])
    env.update(
        RECIPE=str(repo / "recipe.yaml"),  # the recipe path substituted
        GITHUB_ACTIONS="true",
        GITHUB_WORKSPACE=str(root),
        GITHUB_STEP_SUMMARY=str(root.parent / "summary.md"),
        OPTCLI_HEARTBEAT_S="0.2",
        OPTCLI_CACHE_DIR=str(tmp_path_factory.mktemp("ci-cache")),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # optcli from this venv
    )
    push = _play(workflow, "push", root, env)
    stored = (root / "runs/main/report.json").read_text()
    for leftover in [p for p in (root / "runs").rglob("*") if p.is_file()]:
        leftover.unlink()  # a pull request's job starts from a checkout and the stored report only
    (root / "runs/main/report.json").write_text(stored)
    pr = _play(workflow, "pull_request", root, env)
    return {"push": push, "pr": pr, "root": root}


def test_example_workflow_runs_here(ci):
    root, push, pr = ci["root"], ci["push"], ci["pr"]
    for event in (push, pr):
        check = event["Check the recipe"]
        assert check.returncode == 0, check.stderr
    main = push["Run the recipe (main)"]
    assert main.returncode == 1, main.stderr  # the gate fails; main's report is stored all the same
    run = pr["optcli"]
    assert run.returncode == 0, run.stderr  # the step records the exit code; the last step fails the job
    summary = json.loads((root / "optcli.json").read_text())
    assert summary["exit_code"] == 1
    assert pr["Fail on the verdict"].returncode == 1
    report = json.loads((root / "runs/pr/report.json").read_text())
    assert report.get("regression"), "--against runs/main/report.json was not applied"
    assert pr["Post report.md as the PR comment"] == "runs/pr/report.md"


def test_json_stdout_is_exactly_one_summary_object(ci):
    text = (ci["root"] / "optcli.json").read_text()  # the PR step's stdout, redirected
    assert text.count("\n") == 1 and text.endswith("}\n"), text
    summary = json.loads(text)
    assert summary["command"] == "run" and summary["verdict"] == "fail" and summary["exit_code"] == 1
    assert summary["report"] == "runs/pr/report.json"
    assert summary["artifact"] == "runs/pr/exported.onnx" and summary["engine"] == "onnxruntime-fp32"
    failed = {(g["name"], g["engine"], g["threshold_text"]) for g in summary["failed_gates"]}
    assert ("validate.cosine", "onnxruntime-fp32", "> 1.5") in failed
    assert summary["error"] is None


def test_human_output_goes_to_stderr_and_ends_with_the_verdict(ci):
    stderr = ci["pr"]["optcli"].stderr
    lines = stderr.splitlines()
    assert any(line.startswith("ok export") for line in lines) and "Gates" in stderr
    verdict = lines[-1]
    assert re.match(r"FAIL \(\d gate\(s\) failed\): ", verdict) and COSINE_FAILS in verdict, verdict
    assert verdict.endswith("report: runs/pr/report.json")
    assert "deploy:" not in stderr  # a run that failed its gates deploys nothing


def test_heartbeat_in_non_terminal_output(ci):
    for proc in (ci["push"]["Run the recipe (main)"], ci["pr"]["optcli"]):
        beats = [m.group(1) for m in map(HEARTBEAT.match, proc.stderr.splitlines()) if m]
        assert beats.count("load") >= 2, proc.stderr  # a 1.2 s load, a beat every 0.2 s


def test_failed_gate_is_a_github_annotation(ci):
    lines = ci["pr"]["optcli"].stderr.splitlines()
    assert f"::error title=optcli gate::{COSINE_FAILS}" in lines
