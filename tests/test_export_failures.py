"""Export failures in a real `optcli run`: one paragraph naming the user's line, torch's output in
`<run>/logs/export.log` (never on the terminal), hints that are true, and a Ctrl-C inside the exporter
that stays an interrupt whatever torch wraps it in."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest
from conftest import tiny_recipe_text
from helpers import resolver_for

from optcli.capture import captured_output
from optcli.chain import reraise_interrupt, user_frame
from optcli.errors import StageError
from optcli.export import export_onnx

BRANCHY = '''
import os
import pathlib
import time

import torch
from torch import nn


class Branchy(nn.Module):
    """Data-dependent control flow: which branch runs depends on the values, not the shapes."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        y = self.fc(x)
        if y.sum() > 0:
            return y * 2
        return -y


def make_branchy():
    torch.manual_seed(0)
    return Branchy().eval()


_CALLS = [0]


class Stop(KeyboardInterrupt):
    pass


STOP = Stop("stop")


class WrapsInterrupt(nn.Module):
    """During export, an interrupt turns into another error in cleanup code, as in torch's own code.

    Call 1 is optcli's eager check, call 2 the exporter's non-strict trace, call 3 its strict retry."""

    def __init__(self, folder=None):
        super().__init__()
        self.folder = folder
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        _CALLS[0] += 1
        if _CALLS[0] == 2:
            try:
                if self.folder is None:
                    raise STOP
                (pathlib.Path(self.folder) / "exporting").write_text(str(os.getpid()))
                time.sleep(120)  # the test sends SIGINT here
            finally:
                raise RuntimeError("tracer state lost")
        if _CALLS[0] > 2:
            raise ValueError("the model cannot be traced twice")
        return self.fc(x)


def make_wrapping(folder=None):
    torch.manual_seed(0)
    return WrapsInterrupt(folder).eval()
'''
IF_LINE = BRANCHY.splitlines().index("        if y.sum() > 0:") + 1
BRANCHY_MODEL = (
    "model:\n  source: branchy.py:{factory}\n  kwargs: {kwargs}\n"
    "  inputs:\n    - {{name: x, shape: [batch, 16]}}\n  dims:\n    batch: {{min: 1, opt: 4, max: 32}}\n"
)


def recipe(folder: Path, factory: str = "make_branchy", kwargs: str = "{}", **sections: str) -> None:
    (folder / "branchy.py").write_text(BRANCHY)
    model = BRANCHY_MODEL.format(factory=factory, kwargs=kwargs)
    (folder / "recipe.yaml").write_text(tiny_recipe_text(model=model, **sections))


def optcli(*args: str, out: str = "out") -> tuple[list[str], dict[str, str]]:
    environ = {k: v for k, v in os.environ.items() if k != "OPTCLI_DEBUG"}
    return [sys.executable, "-m", "optcli", "run", "recipe.yaml", "--out", out, *args], environ


def test_data_dependent_branch_is_one_paragraph_naming_the_users_line(tmp_path):
    recipe(tmp_path)
    runs = {}
    for out, flags in (("out", []), ("out-quiet", ["-q"])):  # both at once: each is mostly torch's startup
        command, environ = optcli(*flags, out=out)
        runs[out] = subprocess.Popen(
            command, cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    for out, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=300)
        output = stdout + stderr
        assert proc.returncode == 2, output
        assert len(output.splitlines()) < 15, output  # not torch's graph dumps
        assert "\x1b[" not in output and "def forward" not in output and "Traceback" not in output
        flat = " ".join(output.split())  # undo the console's line wrapping
        assert f"branchy.py:{IF_LINE} `if y.sum() > 0:`" in flat, flat
        assert "GuardOnDataDependentSymNode" in flat and "torch.cond" in flat
        assert "records only the path" in flat  # the TorchScript alternative comes with its caveat
        assert f"{out}/logs/export.log" in flat
        log = (tmp_path / out / "logs" / "export.log").read_text()
        assert "def forward" in log and "strict=True" in log  # torch's dumps, both capture strategies
        assert log.rstrip().endswith("# failed: TorchExportError")
        assert not list((tmp_path / out / "logs").glob(".*partial"))
        report = json.loads((tmp_path / out / "report.json").read_text())
        assert report["error"]["stage"] == "export" and report["error"]["exit_code"] == 2
        assert f"branchy.py:{IF_LINE}" in report["error"]["message"]


def test_torchscript_exporter_output_goes_to_the_log_and_the_frozen_branch_is_reported(tmp_path):
    recipe(
        tmp_path,
        export="export: {exporter: torchscript}",
        validate="validate: {enabled: false}",
        benchmark="benchmark: {enabled: false}",
    )
    command, environ = optcli()
    done = subprocess.run(command, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output  # the one-batch export check cannot see the dropped branch ...
    assert "TracerWarning" not in output and "DeprecationWarning" not in output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    frozen = [w for w in report["warnings"] if f"branchy.py:{IF_LINE}" in w]  # ... so the report says it
    assert frozen and "records only the path the example inputs took" in frozen[0]
    assert f"branchy.py:{IF_LINE}" in " ".join(output.split())
    export = next(s for s in report["stages"] if s["name"] == "export")
    assert export["details"]["log"] == "logs/export.log"
    log = (tmp_path / "out" / "logs" / "export.log").read_text()
    assert "TracerWarning" in log and log.rstrip().endswith("# finished")


def test_ctrl_c_that_torch_turns_into_another_error_exits_130(tmp_path):
    """The interrupt lands in the model's trace, a cleanup turns it into a RuntimeError, torch's
    capture strategies catch that and retry, and the export fails: still an interrupt, not bad input."""
    recipe(tmp_path, factory="make_wrapping", kwargs="{folder: '.'}")
    command, environ = optcli()
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A shell that runs the tests in the background ignores SIGINT, and optcli keeps it ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "exporting").exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the export did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output
    assert "interrupted" in output
    assert "exporter" not in output and "hint" not in output, output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "interrupted" and report["error"]["stage"] == "export"
    assert not (tmp_path / "out" / "exported.onnx").exists()
    assert (tmp_path / "out" / "logs" / "export.log").read_text().rstrip().endswith("# interrupted")


def test_export_onnx_reraises_the_original_interrupt_object(tmp_path):
    (tmp_path / "branchy.py").write_text(BRANCHY)
    sys.path.insert(0, str(tmp_path))
    try:
        import branchy
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("branchy", None)
    with pytest.raises(KeyboardInterrupt) as info:
        export_onnx(
            branchy.make_wrapping(),
            resolver_for(("x", ["batch", 16])),
            tmp_path / "m.onnx",
            exporter="dynamo",
            opset=18,
            output_names=None,
            external_data=None,
        )
    assert info.value is branchy.STOP  # its class (e.g. which signal) survives
    assert not (tmp_path / "m.onnx").exists()


def test_reraised_interrupt_leaves_no_loop_for_traceback_printers():
    from rich.traceback import Traceback

    stop = KeyboardInterrupt()
    try:
        try:
            try:
                raise stop
            finally:
                raise RuntimeError("cleanup")
        except RuntimeError as inner:
            raise ValueError("wrapper") from inner
    except ValueError as wrapper:
        with pytest.raises(KeyboardInterrupt) as info:
            reraise_interrupt(wrapper)
    assert info.value is stop
    traceback.format_exception(info.value)
    Traceback.extract(type(info.value), info.value, info.value.__traceback__)  # rich follows links blindly


def test_no_interrupt_means_reraise_does_nothing():
    try:
        raise ValueError("plain") from OSError("disk")
    except ValueError as exc:
        reraise_interrupt(exc)


def test_user_frame_prefers_the_model_file_over_library_frames(tmp_path):
    user = tmp_path / "net.py"
    user.write_text("def boom():\n    import json\n    json.loads('{')\n")
    namespace: dict = {}
    exec(compile(user.read_text(), str(user), "exec"), namespace)
    try:
        namespace["boom"]()
    except ValueError as exc:
        frame = user_frame(exc, prefer=[str(user)])
    assert frame is not None and (frame.file, frame.line) == (str(user), 3)
    assert frame.code == "json.loads('{')"


def test_capture_takes_c_level_and_python_output_and_restores_the_terminal(tmp_path, capfd):
    log = tmp_path / "logs" / "x.log"
    with pytest.raises(RuntimeError), captured_output(log, title="probe", loggers=["torch"]):
        os.write(1, b"fd-one\n")
        os.write(2, b"fd-two\n")
        print("python-print")
        print("python-stderr", file=sys.stderr)
        ctypes.CDLL(None).printf(b"c-printf\n")  # buffered in C's stdio until the capture flushes it
        import logging
        import warnings

        logging.getLogger("torch.onnx").warning("torch-logger")
        warnings.warn("a-warning", UserWarning, stacklevel=1)
        raise RuntimeError("exporter failed")
    print("after")
    out, err = capfd.readouterr()
    assert out == "after\n" and err == ""
    text = log.read_text()
    for marker in (
        "c-printf",
        "fd-one",
        "fd-two",
        "python-print",
        "python-stderr",
        "torch-logger",
        "a-warning",
    ):
        assert marker in text
    assert text.rstrip().endswith("# failed: RuntimeError")
    assert sorted(p.name for p in log.parent.iterdir()) == ["x.log"]  # no partial file left


def test_export_without_a_log_keeps_the_terminal_clean(tmp_path, capfd):
    (tmp_path / "branchy.py").write_text(BRANCHY)
    sys.path.insert(0, str(tmp_path))
    try:
        import branchy
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("branchy", None)
    with pytest.raises(StageError, match=r"branchy\.py:\d+ `if y\.sum\(\) > 0:`") as info:
        export_onnx(
            branchy.make_branchy(),
            resolver_for(("x", ["batch", 16])),
            tmp_path / "m.onnx",
            exporter="dynamo",
            opset=18,
            output_names=None,
            external_data=None,
        )
    assert "export.log" not in str(info.value)
    out, err = capfd.readouterr()
    assert "def forward" not in out + err and "torch.onnx" not in out + err
