"""Same recipe, same inputs -> same bytes: two `optcli run` processes write byte-identical artifacts, and
the calibration cache key covers every byte of the model (external data included)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import MODEL_FILE, tiny_recipe_text
from onnx import TensorProto, helper, numpy_helper

from optcli.calibration import SourceContext
from optcli.quantization.calibrator import CalibrationCache, calibrate, calibration_key
from optcli.quantization.settings import CalibrationSettings
from optcli.stages.data import DataStream

INT8 = (
    "quantization: {precision: int8, calibration: "
    "{samples: 16, batch_size: 8, data: {type: synthetic, seed: 3}}}"
)
SOURCES = {"file": "models.py:make_two_layer", "module": "models:make_two_layer"}


def run_optcli(folder: Path, kind: str, attempt: int) -> tuple[subprocess.CompletedProcess, Path]:
    out = folder / f"out-{kind}-{attempt}"
    # A different hash seed per process: anything derived from hash() would differ between the two.
    env = {**os.environ, "PYTHONHASHSEED": str(attempt)}
    env.pop("OPTCLI_DEBUG", None)
    result = subprocess.run(
        [sys.executable, "-m", "optcli", "run", f"{kind}.yaml", "--out", str(out), "-q"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return result, out


@pytest.fixture(scope="module")
def twice(tmp_path_factory) -> dict[str, list[tuple[subprocess.CompletedProcess, Path]]]:
    """Each source kind run twice, in separate processes, with the default (dynamo) exporter."""
    folder = tmp_path_factory.mktemp("reproducible")
    (folder / "models.py").write_text(MODEL_FILE)
    for kind, source in SOURCES.items():
        text = tiny_recipe_text(quantization=INT8).replace("models.py:make_two_layer", source)
        (folder / f"{kind}.yaml").write_text(text)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            kind: [pool.submit(run_optcli, folder, kind, attempt) for attempt in (1, 2)] for kind in SOURCES
        }
        return {kind: [f.result() for f in runs] for kind, runs in futures.items()}


@pytest.mark.parametrize("kind", list(SOURCES))
def test_two_processes_write_byte_identical_artifacts(twice, kind):
    (first, out1), (second, out2) = twice[kind]
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    for name in ("exported.onnx", "quantized.onnx"):
        assert (out1 / name).read_bytes() == (out2 / name).read_bytes(), f"{name} differs between runs"
    reports = [json.loads((out / "report.json").read_text()) for out in (out1, out2)]
    assert reports[0]["provenance"] == reports[1]["provenance"]
    keys = [next(s for s in r["stages"] if s["name"] == "quantize:int8")["details"] for r in reports]
    assert keys[0]["calibration_key"] == keys[1]["calibration_key"]
    # The statistics file is named by the cache key (model digest + data key): the same in both runs.
    assert Path(keys[0]["statistics"]).name == Path(keys[1]["statistics"]).name


def test_file_source_module_name_is_stable_and_reaches_the_artifact(twice):
    # The name optcli gives 'models.py' is in the node metadata: it must not come from salted hash().
    (_, out1), (_, out2) = twice["file"]
    names = [
        {p.value for n in onnx.load(str(out / "exported.onnx")).graph.node for p in n.metadata_props}
        for out in (out1, out2)
    ]
    user = {text for text in names[0] if "optcli_user_models_" in text}
    assert user, "the exported model no longer names the user's module; this test proves nothing"
    assert names[0] == names[1]


# ---------------------------------------------------------------------------- cache keys


def external_data_model(folder: Path, weight: np.ndarray) -> Path:
    """y = x @ W + 1, W stored in model.onnx.data."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "one"], ["y"])],
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(np.ones(4, np.float32), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0
    )
    return path


def test_changing_only_external_data_changes_the_calibration_key_and_misses_the_cache(tmp_path):
    path = external_data_model(tmp_path, np.eye(4, dtype=np.float32))
    graph_bytes = path.read_bytes()
    assert (tmp_path / "model.onnx.data").stat().st_size > 0
    cache = CalibrationCache(tmp_path / "calibration", data_key="same-data")
    rng = np.random.default_rng(0)
    data = [{"x": rng.standard_normal((8, 4)).astype(np.float32)} for _ in range(2)]

    def ranges() -> tuple[dict, bool]:
        result = calibrate(
            path, iter(data), ["x"], method="minmax", percentile=99.99, symmetric=False, cache=cache
        )
        return result.ranges, result.details["statistics_reused"]

    before_key = calibration_key(path, "same-data")
    before, reused = ranges()
    assert not reused
    assert ranges()[1], "the same model and data should reuse the statistics"

    # New weights of the same size: the .data file changes, the .onnx file (offsets only) does not.
    other = tmp_path / "retrained"
    other.mkdir()
    external_data_model(other, 10 * np.eye(4, dtype=np.float32))
    assert (other / "model.onnx").read_bytes() == graph_bytes
    shutil.copyfile(other / "model.onnx.data", tmp_path / "model.onnx.data")
    assert path.read_bytes() == graph_bytes  # the .onnx alone cannot tell the two apart
    assert calibration_key(path, "same-data") != before_key
    after, reused = ranges()
    assert not reused, "statistics of the old weights were served for the new ones"
    assert after["y"][1] > 5 * before["y"][1]  # and they are the new model's


def test_calibration_data_key_follows_the_callable_file(model_dir):
    from helpers import resolver_for

    script = model_dir / "data.py"
    script.write_text("def batches():\n    return []\n")
    settings = CalibrationSettings.model_validate(
        {"data": {"type": "callable", "callable": "data.py:batches"}}
    )
    ctx = SourceContext(resolver_for(("x", ["batch", 16])), model_dir, "quantization.calibration.data")

    def fingerprint() -> str:  # a fresh stream, as each run opens one
        return DataStream(settings.data, ctx, settings.batch_size, settings.samples, ["x"]).fingerprint()

    key = fingerprint()
    assert fingerprint() == key
    script.write_text("def batches():\n    return [{'x': 1}]\n")  # the user edited the data code
    assert fingerprint() != key
