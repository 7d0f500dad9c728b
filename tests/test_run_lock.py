"""One run per run folder: a second `optcli run` into a busy --out exits 2 naming the holder, or waits
with --wait; a lock left by a dead run is taken over; a live process's staging folder is never removed.
Also the `error` record report.json carries when a run fails."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_recipe_text
from test_interrupts import holding_recipe, start, stderr_of, wait_for

from optcli.errors import UserInputError
from optcli.runlock import LOCK_NAME, RunLock, pid_alive
from optcli.workspace import Workspace


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: the pid names no process now
    assert not pid_alive(proc.pid)
    return proc.pid


def wait_for_text(proc: subprocess.Popen, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in " ".join(stderr_of(proc).split()):  # rich wraps long lines
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no '{text}' from optcli (exit {proc.returncode}):\n{stderr_of(proc)}")
        time.sleep(0.05)


def test_second_run_exits_2_naming_the_holder_or_waits_for_it(model_dir):
    holding_recipe(model_dir)
    out = model_dir / "out"
    (model_dir / "hold-calibration").touch()
    first = start(model_dir)
    wait_for(model_dir / "reached-calibration", first)  # first holds the folder, mid-quantization
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == first.pid

    second = start(model_dir)
    assert second.wait(timeout=120) == 2
    err = " ".join(stderr_of(second).split())
    assert f"error: run folder 'out' is in use by optcli pid {first.pid} on host" in err
    assert "--wait" in err and "Traceback" not in err
    assert json.loads((out / "report.json").read_text())["status"] == "running"  # first's, untouched

    queued = start(model_dir, "--wait")
    wait_for_text(queued, "waiting for it to finish")
    assert f"in use by optcli pid {first.pid}" in " ".join(stderr_of(queued).split())
    assert queued.poll() is None

    (model_dir / "hold-calibration").unlink()
    assert first.wait(timeout=120) == 0, stderr_of(first)  # unharmed by the other two
    assert "PASS" in stderr_of(first)
    assert queued.wait(timeout=180) == 0, stderr_of(queued)
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "finished" and report["verdict"] == "pass"
    # The queued run reuses what the first one stored in the stage cache.
    cached = {s["name"]: s["details"].get("cached") for s in report["stages"]}
    assert cached["export"] is True and cached["quantize:int8"] is True
    assert not list(out.glob(".staging-*"))
    assert (out / LOCK_NAME).read_text() == ""


def test_a_dead_runs_lock_and_staging_are_taken_over(cli, write_recipe, model_dir):
    out = model_dir / "out"
    out.mkdir()
    gone = dead_pid()
    stale = {"pid": gone, "host": socket.gethostname(), "started": "earlier"}
    (out / LOCK_NAME).write_text(json.dumps(stale))
    (out / f".staging-{gone}-abc").mkdir()
    (out / f".staging-{gone}-abc" / "quantized.onnx").write_bytes(b"half")
    live = out / f".staging-{os.getppid()}-def"  # a live process other than the run
    live.mkdir()
    code, _, err = cli("run", write_recipe(export="export: {exporter: torchscript}"), "--out", out, "-q")
    assert code == 0, err
    assert f"the last run in '{out}' (optcli pid {gone} on host" in err and "ended without finishing" in err
    assert not (out / f".staging-{gone}-abc").exists()
    assert live.is_dir()
    assert (out / LOCK_NAME).read_text() == ""


def test_cleanup_never_removes_a_live_processs_staging(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "live": f".staging-{sleeper.pid}-a",
            "dead": f".staging-{dead_pid()}-b",
            "mine": f".staging-{os.getpid()}-c",
            "legacy": ".staging-xyz",  # older versions: no owner recorded
        }
        for name in names.values():
            (tmp_path / name).mkdir()
        Workspace(tmp_path).prepare()
        assert sorted(p.name for p in tmp_path.iterdir()) == [names["live"]]
    finally:
        sleeper.kill()
        sleeper.wait()
    Workspace(tmp_path).prepare()  # its owner is gone now
    assert list(tmp_path.iterdir()) == []


def test_lock_is_exclusive_and_released(tmp_path):
    first = RunLock(tmp_path)
    first.acquire()
    holder = json.loads((tmp_path / LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] and holder["started"]
    with pytest.raises(UserInputError, match=f"in use by optcli pid {os.getpid()} on host"):
        RunLock(tmp_path).acquire()  # flock is per open file: a second one conflicts even here
    first.release()
    with RunLock(tmp_path).held() as again:
        assert again.previous is None  # released cleanly: nothing to take over


def test_waiting_for_the_lock_can_be_interrupted(tmp_path):
    import signal
    import threading

    from optcli import interrupts

    holder = RunLock(tmp_path)
    holder.acquire()
    said = []
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
    with interrupts.trap(), pytest.raises(interrupts.Interrupted):
        timer.start()
        RunLock(tmp_path).acquire(wait=True, on_wait=said.append)
    timer.join()
    assert "waiting for it to finish" in said[0]
    holder.release()
    with RunLock(tmp_path).held():  # the interrupted waiter kept nothing
        pass


# ------------------------------------------------------------------------ the error record


def test_user_error_writes_the_error_record(model_dir):
    (model_dir / "bad_data.py").write_text(
        "import numpy as np\n\ndef batches():\n    yield {'y': np.zeros((4, 16), 'float32')}\n"
    )
    quantization = (
        "quantization: {precision: int8, calibration: "
        "{data: {type: callable, callable: 'bad_data.py:batches'}, samples: 8, batch_size: 4}}"
    )
    (model_dir / "recipe.yaml").write_text(
        tiny_recipe_text(export="export: {exporter: torchscript}", quantization=quantization)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "optcli", "run", "recipe.yaml", "--out", "out"],
        cwd=model_dir,
        capture_output=True,
        text=True,
        timeout=180,
        env={k: v for k, v in os.environ.items() if k != "OPTCLI_DEBUG"},
    )
    assert proc.returncode == 2, proc.stderr
    report = json.loads((model_dir / "out" / "report.json").read_text())
    assert report["status"] == "error" and report["verdict"] == "error"
    error = report["error"]
    assert error["stage"] == "quantize:int8" and error["kind"] == "user_input" and error["exit_code"] == 2
    assert "missing input(s) ['x']" in error["message"]
    assert error["message"] in " ".join(proc.stderr.split())  # what the terminal said


def test_environment_and_internal_errors_are_recorded_with_their_exit_code(cli, write_recipe, model_dir):
    path = write_recipe(build="build:\n  - {engine: tensorrt, artifact: exported}")
    code, _, err = cli("run", path, "--out", model_dir / "env")
    assert code == 3, err
    error = json.loads((model_dir / "env" / "report.json").read_text())["error"]
    assert (error["stage"], error["kind"], error["exit_code"]) == ("preflight", "environment", 3)

    def broken(*args):
        raise RuntimeError("a bug")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("optcli.pipeline.benchmark_stage", broken)
        code, _, err = cli(
            "run", write_recipe(export="export: {exporter: torchscript}"), "--out", model_dir / "bug"
        )
    assert code == 4, err
    report = json.loads((model_dir / "bug" / "report.json").read_text())
    assert report["error"] == {
        "stage": "benchmark",
        "kind": "internal",
        "message": "RuntimeError: a bug",
        "exit_code": 4,
        "hint": "rerun with --debug for the traceback; please report it",
    }
    assert "internal error: RuntimeError: a bug" in err


def test_user_code_calling_sys_exit_is_an_error_not_a_verdict(cli, write_recipe, model_dir):
    (model_dir / "exits.py").write_text("import sys\n\ndef batches():\n    sys.exit(0)\n    yield\n")
    quantization = (
        "quantization: {precision: int8, calibration: "
        "{data: {type: callable, callable: 'exits.py:batches'}, samples: 8, batch_size: 4}}"
    )
    path = write_recipe(export="export: {exporter: torchscript}", quantization=quantization)
    code, _, err = cli("run", path, "--out", model_dir / "out")
    assert code == 2, err
    assert "user code called sys.exit(0)" in err
    report = json.loads((model_dir / "out" / "report.json").read_text())
    assert report["status"] == "error" and report["error"]["stage"] == "quantize:int8"


def test_a_killed_run_leaves_a_running_report_not_the_last_verdict(model_dir):
    """SIGKILL cannot be handled: report.json must not keep claiming the previous run's pass."""
    holding_recipe(model_dir)
    out = model_dir / "out"
    out.mkdir()
    (out / "report.json").write_text(json.dumps({"status": "finished", "verdict": "pass"}))
    (model_dir / "hold-calibration").touch()
    proc = start(model_dir)
    wait_for(model_dir / "reached-calibration", proc)
    proc.kill()
    proc.wait()
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "running" and report["verdict"] == "error"
    assert list(out.glob(f".staging-{proc.pid}-*"))  # quantized.onnx's, open when it was killed
    (model_dir / "hold-calibration").unlink()
    rerun = start(model_dir)
    assert rerun.wait(timeout=180) == 0, stderr_of(rerun)
    assert f"(optcli pid {proc.pid} on host" in " ".join(stderr_of(rerun).split())  # its lock, taken over
    assert not list(out.glob(".staging-*"))
    assert json.loads((out / "report.json").read_text())["status"] == "finished"


def test_lock_path_is_inside_the_run_folder(tmp_path: Path):
    assert RunLock(tmp_path).path == tmp_path / LOCK_NAME
