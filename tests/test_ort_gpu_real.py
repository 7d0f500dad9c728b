"""The onnxruntime_gpu engine against the REAL onnxruntime-gpu wheel, on a machine without CUDA.

scripts/ort_gpu_venv.sh builds a venv (cached under $OPTCLI_TEST_CACHE, default ~/.cache/optcli-test)
holding onnxruntime-gpu and not onnxruntime (they share one module, microsoft/onnxruntime#26996); each
test runs optcli's code there in a subprocess. No fakes: the providers, the loader errors, the silent
CPU fallback, IO binding and the profile format are the wheel's own. Nothing here runs on a GPU: these
prove that without CUDA optcli says why and exits 3 instead of reporting CPU numbers as GPU ones.
Skipped when the package index is unreachable (first run only) or when a CUDA driver is present.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "ort_gpu_venv.sh"
CUDA, TRT, CPU = "CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"

pytestmark = pytest.mark.skipif(
    ctypes.util.find_library("cuda") is not None,
    reason="a CUDA driver is present: these tests prove the behaviour without one",
)


@pytest.fixture(scope="module")
def gpu_python() -> Path:
    """The venv's python (built on first use: ~1 min and a ~250 MB download, then cached)."""
    try:
        done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=1200)
    except subprocess.TimeoutExpired:
        pytest.skip("building the onnxruntime-gpu venv took over 20 minutes (slow or no package index)")
    if done.returncode == 3:
        pytest.skip(f"package index unreachable, cannot install onnxruntime-gpu: {done.stderr[-400:]}")
    assert done.returncode == 0, f"{SCRIPT} failed:\n{done.stderr[-3000:]}"
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """y = relu(x @ W), x: [batch, 4] with a dynamic batch, written with onnx.helper."""
    import onnx
    from onnx import TensorProto, helper

    weight = np.arange(16, dtype=np.float32).reshape(4, 4) - 8
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, [4, 4], weight.ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = tmp_path_factory.mktemp("ort-gpu") / "tiny.onnx"
    onnx.save(model, path)
    return path


PRELUDE = """
import json, sys
from pathlib import Path
import numpy as np
from optcli.backends.base import EngineContext
from optcli.backends.onnxruntime_gpu import OnnxRuntimeGpuConfig, OnnxRuntimeGpuEngine
from optcli.errors import MissingDependencyError
from optcli.specs import DimRange, InputSpec

MODEL, WORK = Path(sys.argv[1]), Path(sys.argv[2])

def engine(**config):
    context = EngineContext(
        artifacts={"exported": MODEL}, precisions={"exported": "fp32"}, torch_model=lambda: None,
        input_names=["x"], output_names=["y"],
        extras={"inputs": [InputSpec(name="x", shape=["batch", 4])],
                "dims": {"batch": DimRange(min=1, opt=2, max=8)}, "work_dir": WORK},
    )
    return OnnxRuntimeGpuEngine(OnnxRuntimeGpuConfig(**config), context)

def load_error(**config):
    try:
        engine(**config).load()
    except MissingDependencyError as exc:
        return {"class": type(exc).__name__, "exit_code": exc.exit_code, "message": str(exc)}
    return None
"""


def run_in_venv(python: Path, model: Path, tmp_path: Path, body: str) -> dict:
    """Run PRELUDE + body in the onnxruntime-gpu venv; body sets `result`, printed as JSON."""
    code = PRELUDE + textwrap.dedent(body) + "\nprint('RESULT ' + json.dumps(result))\n"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(python), "-c", code, str(model), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("RESULT "))
    return {**json.loads(line.removeprefix("RESULT ")), "_stdout": done.stdout, "_stderr": done.stderr}


def test_venv_has_only_the_gpu_wheel_and_this_checkout(gpu_python, tiny_model, tmp_path):
    out = run_in_venv(
        gpu_python,
        tiny_model,
        tmp_path,
        """
        from importlib import metadata
        import onnxruntime as ort, optcli
        def version(dist):
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                return None
        result = {"gpu": version("onnxruntime-gpu"), "cpu": version("onnxruntime"), "torch": version("torch"),
                  "optcli": optcli.__file__, "providers": ort.get_available_providers()}
        """,
    )
    assert out["gpu"] and out["cpu"] is None
    assert out["torch"] is None  # the engine and its imports run without torch
    assert Path(out["optcli"]).resolve().is_relative_to(ROOT)
    # The real wheel registers both GPU providers even here, without CUDA: the list is no proof.
    assert {CUDA, TRT, CPU} <= set(out["providers"])


def test_real_cuda_provider_silently_falls_back_and_optcli_refuses(gpu_python, tiny_model, tmp_path):
    out = run_in_venv(
        gpu_python,
        tiny_model,
        tmp_path,
        """
        import onnxruntime as ort
        plain = ort.InferenceSession(str(MODEL), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        result = {"plain": plain.get_providers(), "error": load_error(provider="cuda")}
        """,
    )
    assert out["plain"] == [CPU]  # ORT itself: no exception, just CPU (the fallback to catch)
    error = out["error"]
    assert error is not None, "the engine loaded on a machine without CUDA"
    assert error["class"] == "MissingDependencyError" and error["exit_code"] == 3
    message = error["message"]
    assert "is not running on the GPU" in message
    assert f"did not enable {CUDA}; the session runs on {CPU}" in message
    # The loader's reason, not just the symptom: a CUDA library the provider needs is missing.
    assert f"{CUDA} cannot load: lib" in message and "cannot open shared object file" in message
    assert "Hint: onnxruntime-gpu" in message and "cuDNN 9.x" in message


def test_real_tensorrt_provider_error_is_not_retried_on_cpu(gpu_python, tiny_model, tmp_path):
    out = run_in_venv(gpu_python, tiny_model, tmp_path, 'result = {"error": load_error(provider="tensorrt")}')
    error = out["error"]
    assert error is not None and error["exit_code"] == 3
    # The real InferenceSession raises for TensorRT; enable_fallback=0 must stop its CPU retry.
    assert f"{TRT} failed to start" in error["message"] and "TensorRT libraries" in error["message"]
    assert "Falling back" not in out["_stdout"]
    assert f"{TRT} cannot load: lib" in error["message"]


def test_preflight_says_the_provider_cannot_load(gpu_python, tiny_model, tmp_path):
    """unavailable() is what the plan checks before any stage: exit 3 before export, not after."""
    out = run_in_venv(
        gpu_python,
        tiny_model,
        tmp_path,
        """
        import onnxruntime as ort
        configs = {p: OnnxRuntimeGpuConfig(provider=p) for p in ("cuda", "tensorrt")}
        why = {p: OnnxRuntimeGpuEngine.unavailable(config) for p, config in configs.items()}
        result = {p: [w.reason, w.fix] if w else None for p, w in why.items()}
        result["cuda_version"] = ort.cuda_version
        """,
    )
    major = out["cuda_version"].split(".")[0]
    for short, provider in (("cuda", CUDA), ("tensorrt", TRT)):
        assert out[short] is not None, f"{short} reported available without CUDA"
        reason, fix = out[short]
        assert reason.startswith(f"onnxruntime_gpu: {provider} cannot load: lib")
        assert "cannot open shared object file" in reason
        assert f"CUDA {major}.x" in fix and "NVIDIA driver" in fix


def test_io_binding_calls_against_the_real_api(gpu_python, tiny_model, tmp_path):
    """bind/run/outputs on a real session with device "cpu" (the engine passes "cuda"), and the
    engine's own bind on cuda without a device: a one-paragraph exit-3 error, not a RuntimeError."""
    out = run_in_venv(
        gpu_python,
        tiny_model,
        tmp_path,
        """
        from optcli.backends.onnxruntime_gpu import iobinding
        from optcli.ort_session import create_session
        session = create_session(MODEL)
        x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
        bound = iobinding.bind(session, {"x": x}, ["y"], "cpu", 0)
        iobinding.run(session, bound)
        first = iobinding.outputs(bound)[0]
        iobinding.run(session, bound)  # bound once, run many times
        # The engine's _bind_impl with a loaded real session (load() itself needs a GPU).
        gpu = engine(provider="cuda")
        gpu._session, gpu._input_names, gpu._output_names, gpu._loaded = session, ["x"], ["y"], True
        try:
            gpu.bind({"x": x})
            bind_error = None
        except MissingDependencyError as exc:
            bind_error = [exc.exit_code, str(exc)]
        result = {"bound": first.tolist(), "again": iobinding.outputs(bound)[0].tolist(),
                  "plain": session.run(None, {"x": x})[0].tolist(), "bind_error": bind_error}
        """,
    )
    assert out["bound"] == out["plain"] == out["again"]
    assert np.asarray(out["bound"]).shape == (3, 4) and np.asarray(out["bound"]).max() > 0
    code, message = out["bind_error"]
    assert code == 3 and "binding inputs on cuda:0 failed" in message
    assert "CUDA Provider not available" in message  # the real OrtValue error, kept in the message


def test_placement_parses_a_real_profile(gpu_python, tiny_model, tmp_path):
    """The profile format the fallback check reads, as this wheel writes it (CPU nodes only here)."""
    out = run_in_venv(
        gpu_python,
        tiny_model,
        tmp_path,
        """
        from optcli.backends.onnxruntime_gpu import fallback_problem, node_placement
        from optcli.ort_session import create_session
        session = create_session(MODEL, profile_prefix=WORK / "prof")
        for _ in range(2):
            session.run(None, {"x": np.ones((2, 4), np.float32)})
        placement = node_placement(json.loads(Path(session.end_profiling()).read_text()))
        cuda, cpu = "CUDAExecutionProvider", "CPUExecutionProvider"
        result = {"nodes": placement.nodes, "cpu_share": placement.share(cpu),
                  "problem": fallback_problem(cuda, [cuda, cpu], placement, 0.5)}
        """,
    )
    assert out["nodes"] == {CPU: 2}  # MatMul and Relu, counted once (the last run only)
    assert out["cpu_share"] == 1.0
    assert out["problem"].startswith(f"no node ran on {CUDA}")


def test_doctor_rows_with_the_real_wheel(gpu_python, tiny_model, tmp_path):
    out = run_in_venv(
        gpu_python,
        tiny_model,
        tmp_path,
        """
        from optcli.doctor import check_onnxruntime
        result = {c.name: [c.usable, c.detail, c.fix] for c in check_onnxruntime()}
        """,
    )
    assert out["onnxruntime"][0] is True and CUDA in out["onnxruntime"][1]
    for short in ("cuda", "tensorrt"):
        usable, detail, fix = out[f"ort {short} provider"]
        assert usable is False, f"doctor calls the {short} provider usable without CUDA"
        assert detail.startswith("in this build but cannot load: lib") and "NVIDIA driver" in fix


def test_doctor_flags_both_ort_wheels_installed(monkeypatch):
    """A FAKE distribution list (both wheels): doctor says they clash and gives the swap."""
    from optcli import doctor

    versions = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}
    monkeypatch.setattr(doctor, "_version", lambda *dists: next(map(versions.get, dists), None))
    row = doctor.check_onnxruntime()[0]
    assert row.name == "onnxruntime" and row.usable is False
    assert "overwrite each other" in row.detail
    assert row.fix.startswith("pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")


def test_no_extra_installs_onnxruntime_gpu_beside_the_core_onnxruntime():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(dep.startswith("onnxruntime") for dep in project["dependencies"])
    for extra, deps in project["optional-dependencies"].items():
        assert not [d for d in deps if d.startswith("onnxruntime-gpu")], f"[{extra}] lists onnxruntime-gpu"
