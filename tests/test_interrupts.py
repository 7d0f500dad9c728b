"""SIGINT and SIGTERM in a real `optcli run`: exit 130 / 143, report.json says `interrupted` and names
the stage, no staging folder is left, and a rerun into the same folder succeeds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_recipe_text

from optcli import interrupts

# A data callable and a model factory that say when they are reached, then wait while the test
# holds them: the signal lands in a known stage, with no timing guesses.
HOLDING = '''
import os
import pathlib
import time

import numpy as np
import torch
from torch import nn


def hold(folder, name):
    folder = pathlib.Path(folder)
    (folder / f"reached-{name}").write_text(str(os.getpid()))
    while (folder / f"hold-{name}").exists():
        time.sleep(0.02)


def batches(folder, name, seed=0, n=4, size=8):
    hold(folder, name)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield {"x": rng.standard_normal((size, 16)).astype("float32")}


_CALLS = [0]


class Holding(nn.Module):
    """Holds in its second forward: the first is optcli's eager check, the second the exporter's trace."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        _CALLS[0] += 1
        if _CALLS[0] == 2:
            hold(self.folder, "export")
        return self.fc(x)


def make_holding(folder):
    torch.manual_seed(0)
    return Holding(folder).eval()
'''


def data(name: str, seed: int) -> str:
    kwargs = f"{{folder: '.', name: {name}, seed: {seed}}}"
    return f"{{type: callable, callable: 'holding.py:batches', kwargs: {kwargs}}}"


def holding_recipe(folder: Path, exporter: str = "torchscript", model: str | None = None) -> Path:
    (folder / "holding.py").write_text(HOLDING)
    sections = {
        "export": f"export: {{exporter: {exporter}}}",
        "quantization": "quantization: {precision: int8, calibration: "
        f"{{data: {data('calibration', 1)}, samples: 16, batch_size: 8}}}}",
        "validate": f"validate: {{samples: 16, batch_size: 8, data: {data('validate', 2)}}}",
    }
    if model is not None:
        sections["model"] = model
    path = folder / "recipe.yaml"
    path.write_text(tiny_recipe_text(**sections))
    return path


def start(folder: Path, *args: str) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if k != "OPTCLI_DEBUG"}
    log = (folder / f"stderr-{time.monotonic_ns()}.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "optcli", "run", "recipe.yaml", "--out", "out", "-q", *args],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=environ,
        # A shell that runs the tests in the background ignores SIGINT; optcli then would too.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    proc.log_path = Path(log.name)  # type: ignore[attr-defined]
    return proc


def stderr_of(proc: subprocess.Popen) -> str:
    return proc.log_path.read_text()  # type: ignore[attr-defined]


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"optcli exited {proc.returncode} before reaching {path.name}:\n{stderr_of(proc)}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"optcli did not reach {path.name} in {timeout}s:\n{stderr_of(proc)}")
        time.sleep(0.05)


def interrupt_at(folder: Path, stage: str, signum: int) -> tuple[int, str]:
    """Run until `stage` is reached, send the signal, return (exit code, stderr)."""
    (folder / f"hold-{stage}").touch()
    proc = start(folder)
    wait_for(folder / f"reached-{stage}", proc)
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"optcli did not stop within 60 s of {signum}:\n{stderr_of(proc)}")
    return code, stderr_of(proc)


def assert_interrupted(folder: Path, code: int, err: str, signum: int, stage: str) -> dict:
    name = signal.Signals(signum).name
    assert code == 128 + signum, err
    assert f"interrupted by {name}" in err
    assert "Traceback" not in err, err
    out = folder / "out"
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted"
    assert report["verdict"] == "error"
    assert report["error"] == {
        "stage": stage,
        "kind": "interrupted",
        "message": f"interrupted by {name}",
        "exit_code": 128 + signum,
    }
    leftovers = [p.name for p in out.iterdir() if p.name.startswith((".staging-", ".quant-", ".write-test-"))]
    assert leftovers == []
    assert (out / ".optcli.lock").read_text() == ""  # released: no holder named
    return report


def rerun_succeeds(folder: Path) -> dict:
    for marker in folder.glob("hold-*"):
        marker.unlink()
    proc = start(folder)
    assert proc.wait(timeout=180) == 0, stderr_of(proc)
    report = json.loads((folder / "out" / "report.json").read_text())
    assert report["status"] == "finished" and report["error"] is None
    assert not list((folder / "out").glob(".staging-*"))
    return report


def test_sigterm_during_calibration_exits_143_then_rerun_passes(model_dir):
    holding_recipe(model_dir)
    code, err = interrupt_at(model_dir, "calibration", signal.SIGTERM)
    report = assert_interrupted(model_dir, code, err, signal.SIGTERM, "quantize:int8")
    assert [s["name"] for s in report["stages"]] == ["load", "export"]
    assert not (model_dir / "out" / "quantized.onnx").exists()
    cached = {s["name"]: s["details"].get("cached") for s in rerun_succeeds(model_dir)["stages"]}
    # The export finished and was cached; the interrupted quantization was not (never a failure).
    assert cached["export"] is True and cached["quantize:int8"] is False


def test_sigint_during_validation_exits_130_then_rerun_passes(model_dir):
    holding_recipe(model_dir)
    code, err = interrupt_at(model_dir, "validate", signal.SIGINT)
    report = assert_interrupted(model_dir, code, err, signal.SIGINT, "validate")
    assert [s["name"] for s in report["stages"]] == ["load", "export", "quantize:int8", "build"]
    assert (model_dir / "out" / "quantized.onnx").is_file()  # finished stages keep their artifacts
    rerun_succeeds(model_dir)


def test_sigint_inside_the_dynamo_exporter_is_an_interrupt_not_bad_input(model_dir):
    """The exporter wraps what it catches; a Ctrl-C there used to exit 2 with an exporter hint."""
    model = (
        "model:\n  source: holding.py:make_holding\n  kwargs: {folder: '.'}\n"
        "  inputs:\n    - {name: x, shape: [batch, 16]}\n  dims:\n    batch: {min: 1, opt: 4, max: 32}\n"
    )
    holding_recipe(model_dir, exporter="dynamo", model=model)
    code, err = interrupt_at(model_dir, "export", signal.SIGINT)
    assert_interrupted(model_dir, code, err, signal.SIGINT, "export")
    assert "hint" not in err and not (model_dir / "out" / "exported.onnx").exists()


# ------------------------------------------------------------------ the handler itself, in-process


def test_signal_raises_once_and_cleanup_is_not_cut_short():
    cleaned = []
    before = signal.getsignal(signal.SIGTERM)
    with interrupts.trap():
        with pytest.raises(interrupts.Interrupted) as info:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises from here
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # a second signal during cleanup: noted, not raised
                time.sleep(0.05)
                cleaned.append(True)
        assert info.value.signum == signal.SIGTERM and info.value.exit_code == 143
        assert interrupts.received() == signal.SIGTERM
    assert cleaned == [True]
    assert signal.getsignal(signal.SIGTERM) is before  # restored
    assert interrupts.received() is None


def test_a_signal_inside_a_commit_is_raised_after_it():
    done = []
    with interrupts.trap(), pytest.raises(interrupts.Interrupted):
        with interrupts.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            done.append("both renames")
        done.append("not reached")
    assert done == ["both renames"]


def test_a_swallowed_interrupt_stops_the_run_at_the_next_stage():
    with interrupts.trap():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt:
            pass  # what a library that catches everything does
        with pytest.raises(interrupts.Interrupted):
            interrupts.check()


def test_an_error_a_library_made_of_the_interrupt_is_classified_as_the_interrupt():
    from optcli.errors import StageError
    from optcli.outcome import classify

    assert classify(StageError("export failed")).exit_code == 2  # no signal: what it says
    with interrupts.trap():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt as exc:
            wrapped = StageError("export failed: the exporter raised KeyboardInterrupt")
            wrapped.__cause__ = exc
        outcome = classify(wrapped)
    assert (outcome.kind, outcome.exit_code) == ("interrupted", 143)
    assert outcome.message == "interrupted by SIGTERM"
