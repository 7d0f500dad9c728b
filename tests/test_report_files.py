"""report.json is strict JSON (non-finite metrics as strings), and report.md / the terminal say
truthfully how a run ended: finished, error, interrupted, or killed before its final report."""

from __future__ import annotations

import json
import math
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from test_false_pass import NAN_MODEL, optcli, report_of
from test_interrupts import holding_recipe, interrupt_at, start, stderr_of, wait_for

from optcli.report.markdown import render_markdown
from optcli.report.terminal import render_terminal
from optcli.workspace import Workspace

# Python's json accepts NaN/Infinity tokens; a strict reader (jq, JavaScript, Go) does not.
STRICT = (
    "import json, sys\n"
    "def bad(token): raise ValueError(token)\n"
    "json.loads(open(sys.argv[1]).read(), parse_constant=bad)"
)
# A value line of the indented file that is a bare token, as Python's json.dumps writes NaN/inf.
BARE_CONSTANT = re.compile(r'^\s*("[^"]*":\s*)?-?(NaN|Infinity),?$', re.M)


def strict_load(path: Path) -> dict:
    def refuse(token: str):
        raise AssertionError(f"{path.name} holds the bare token {token}: not RFC 8259 JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def strict_tools_accept(path: Path, jq_filter: str) -> None:
    """A second process parses it strictly, and jq (where installed) evaluates `jq_filter` to true."""
    python = subprocess.run([sys.executable, "-c", STRICT, str(path)], capture_output=True, text=True)
    assert python.returncode == 0, python.stderr
    if shutil.which("jq"):
        jq = subprocess.run(["jq", "-e", jq_filter, str(path)], capture_output=True, text=True)
        assert jq.returncode == 0, (jq.stdout, jq.stderr)


def test_write_json_writes_non_finite_floats_as_strings(tmp_path):
    data = {
        "cosine": math.nan,
        "snr_db": math.inf,
        "low": -math.inf,
        "numpy": [np.float32("nan"), np.float64(0.5), np.int64(3), np.bool_(True)],
        "nested": {"values": (1.0, float("inf"))},
        "finite": 0.25,
        "flag": False,
    }
    path = Workspace(tmp_path).write_json("report.json", data)
    assert not BARE_CONSTANT.search(path.read_text())
    assert strict_load(path) == {
        "cosine": "NaN",
        "snr_db": "Infinity",
        "low": "-Infinity",
        "numpy": ["NaN", 0.5, 3, True],
        "nested": {"values": [1.0, "Infinity"]},
        "finite": 0.25,
        "flag": False,
    }
    strict_tools_accept(path, '.cosine == "NaN" and .low == "-Infinity" and .numpy[1] == 0.5')


def test_report_of_a_run_with_nan_outputs_is_strict_json(model_dir):
    (model_dir / "nan_model.py").write_text(NAN_MODEL)
    recipe = model_dir / "nan.yaml"
    recipe.write_text(
        "name: nan\nmodel:\n  source: nan_model.py:make_nan\n  inputs:\n    - {name: x, shape: [batch, 16]}\n"
        "export: {exporter: torchscript}\nvalidate: {samples: 32, batch_size: 16}\n"
        "benchmark: {enabled: false}\n"
    )
    out = model_dir / "run"
    result = optcli("run", recipe, "--out", out, "-q", cwd=model_dir)
    assert result.returncode == 1, result.stderr
    path = out / "report.json"
    assert not BARE_CONSTANT.search(path.read_text())
    report = strict_load(path)
    (engine,) = report["validation"]["engines"]
    assert engine["metrics"]["max_abs"] == "Infinity" and engine["metrics"]["cosine"] == "NaN"
    assert report["status"] == "finished" and report["verdict"] == "fail"
    strict_tools_accept(path, '.verdict == "fail" and .validation.engines[0].metrics.max_abs == "Infinity"')
    markdown = (out / "report.md").read_text()
    assert "## optcli: `nan` - FAIL" in markdown and "Status: `finished`, verdict `fail`" in markdown
    # The renderers read report.json's strings back as numbers.
    assert render_markdown(report) == markdown


def test_report_md_of_a_run_that_stopped_on_an_error(write_recipe, model_dir):
    recipe = write_recipe(
        model="model:\n  source: models.py:not_a_module\n  inputs:\n    - {name: x, shape: [batch, 16]}"
    )
    out = model_dir / "run"
    result = optcli("run", recipe, "--out", out, "-q", cwd=model_dir)
    assert result.returncode == 2, result.stderr
    report = report_of(out)
    error = report["error"]
    assert report["status"] == "error" and (error["stage"], error["kind"], error["exit_code"]) == (
        "load",
        "user_input",
        2,
    )
    markdown = (out / "report.md").read_text()
    assert "## optcli: `tiny` - ERROR (exit 2)" in markdown and "Status: `error`" in markdown
    assert "| error | load | user_input | 2 |" in markdown
    assert f"> {error['message']}" in markdown and "returned a int" in error["message"]
    assert "PASS" not in markdown and "FAIL" not in markdown
    console = Console(record=True, width=200)
    render_terminal(report, console)
    text = console.export_text()
    assert "ERROR (exit 2)" in text and "user_input" in text and error["message"] in text


def test_report_md_of_an_interrupted_run(model_dir):
    holding_recipe(model_dir)
    code, err = interrupt_at(model_dir, "validate", signal.SIGINT)
    assert code == 130, err
    out = model_dir / "out"
    report = strict_load(out / "report.json")
    assert report["status"] == "interrupted" and report["error"]["stage"] == "validate"
    markdown = (out / "report.md").read_text()
    assert "## optcli: `tiny` - INTERRUPTED (exit 130)" in markdown and "Status: `interrupted`" in markdown
    assert "| interrupted | validate | interrupted | 130 |" in markdown
    assert "> interrupted by SIGINT" in markdown
    # Gates that passed before the signal are shown, but under a line that they are no verdict.
    assert "Passing gates (" in markdown and "not a verdict" in markdown
    assert markdown.index("not a verdict") < markdown.index("Passing gates (")
    assert "PASS" not in markdown.split("\n", 1)[0]


def test_report_md_of_a_run_killed_before_its_final_report(model_dir):
    holding_recipe(model_dir)
    (model_dir / "hold-validate").touch()
    proc = start(model_dir)
    wait_for(model_dir / "reached-validate", proc)
    proc.kill()  # SIGKILL: nothing runs after it, so the report written at the start stays
    proc.wait(timeout=60)
    out = model_dir / "out"
    report = strict_load(out / "report.json")
    assert report["status"] == "running" and report["verdict"] == "error", stderr_of(proc)
    markdown = (out / "report.md").read_text()
    assert "## optcli: `tiny` - INCOMPLETE" in markdown and "Status: `running`" in markdown
    assert "has not written its final report" in markdown and "no verdict" in markdown


@pytest.mark.parametrize("status", ["error", "interrupted", "running"])
def test_unfinished_reports_never_render_a_verdict(status):
    error = (
        None
        if status == "running"
        else {"stage": "build", "kind": "internal", "message": "boom", "exit_code": 4}
    )
    report = {
        "status": status,
        "verdict": "error",
        "error": error,
        "recipe": {"name": "r", "sha256": "x"},
        "gates": [
            {
                "name": "export.cosine",
                "engine": "exported",
                "value": 1.0,
                "threshold": ">= 0.99",
                "passed": True,
            }
        ],
    }
    markdown = render_markdown(report)
    headline = markdown.split("\n", 1)[0]
    assert headline.endswith(
        {"error": "ERROR (exit 4)", "interrupted": "INTERRUPTED (exit 4)", "running": "INCOMPLETE"}[status]
    )
    assert "not a verdict" in markdown and f"Status: `{status}`" in markdown
