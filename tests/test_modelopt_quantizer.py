"""The nvidia-modelopt quantizer on tiny exported models (skipped where modelopt is not installed)."""

from __future__ import annotations

import sys

import numpy as np
import onnx
import pytest
from helpers import cosine, resolver_for, run_onnx

from optcli.backends.base import Unavailable
from optcli.backends.onnxruntime import safe_level
from optcli.errors import StageError, UserInputError
from optcli.export import export_onnx, run_torch
from optcli.loading import load_torch_model
from optcli.quantization import QuantizationSettings
from optcli.quantization.modelopt_onnx import QUANTIZER, quantize, unavailable
from optcli.recipe.models import ModelSection

# The keys the onnxruntime quantizer reports, which the stage and the report rely on.
REPORT_KEYS = {
    "quantizer",
    "precision",
    "calibration_method",
    "activations",
    "per_channel",
    "calibration_batches",
    "excluded_nodes",
    "unmatched_exclude_patterns",
    "qdq_nodes",
}


def _export(folder, source: str, shape: list):
    from conftest import MODEL_FILE

    (folder / "models.py").write_text(MODEL_FILE)
    model = load_torch_model(ModelSection(source=source, inputs=[{"name": "x", "shape": shape}]), folder)
    resolver = resolver_for(("x", shape))
    path = export_onnx(
        model, resolver, folder / "m.onnx", exporter="dynamo", opset=18, output_names=None, external_data=None
    ).path
    return path, model, resolver


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    pytest.importorskip("modelopt.onnx.quantization")
    return _export(tmp_path_factory.mktemp("mo"), "models.py:make_cnn", ["batch", 3, 16, 16])


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """ModelOpt's FP8 leaves convs with < 16 channels and GEMMs with K or N < 16 in float (TensorRT
    gains nothing there), so FP8 is checked on TwoLayer, whose first Gemm is 16 -> 32."""
    pytest.importorskip("modelopt.onnx.quantization")
    return _export(tmp_path_factory.mktemp("mo"), "models.py:make_two_layer", ["batch", 16])


def _batches(shape, n=4, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return iter([{"x": rng.standard_normal((size, *shape)).astype(np.float32)} for _ in range(n)])


def _quantize(fixture, tmp_path, **settings):
    src, model, resolver = fixture
    shape = [d.dim_value for d in onnx.load(str(src)).graph.input[0].type.tensor_type.shape.dim[1:]]
    dst = tmp_path / "q.onnx"
    details = quantize(src, dst, QuantizationSettings(**settings), _batches(shape), ["x"])
    x = np.random.default_rng(9).standard_normal((8, *shape)).astype(np.float32)
    level = safe_level("all", settings["precision"])
    return dst, details, cosine(run_onnx(dst, {"x": x}, level)[0], run_torch(model, resolver, {"x": x})[0])


def _fed_by_dq(model: onnx.ModelProto) -> set[str]:
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node if n.op_type != "QuantizeLinear" and set(n.input) & dq}


def test_int8_qdq_keeps_outputs_close(cnn, tmp_path):
    dst, details, cos = _quantize(cnn, tmp_path, precision="int8")
    model = onnx.load(str(dst))
    assert onnx.TensorProto.INT8 in {init.data_type for init in model.graph.initializer}
    assert details.keys() >= REPORT_KEYS
    assert details["quantizer"] == "modelopt" and details["modelopt_calibration_method"] == "max"
    assert details["qdq_nodes"] > 0 and details["calibration_batches"] == 4
    assert details["calibration_shapes"] == "x:8x3x16x16"  # the recipe's batch, not ModelOpt's 1
    assert details["activations"] == "symmetric (signed)"
    assert any(n.op_type == "Conv" for n in model.graph.node if n.name in _fed_by_dq(model))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.onnx"]  # no intermediate files left
    assert cos > 0.99


def test_fp8_uses_e4m3(mlp, tmp_path):
    dst, details, cos = _quantize(mlp, tmp_path, precision="fp8", calibration={"method": "entropy"})
    assert onnx.TensorProto.FLOAT8E4M3FN in {i.data_type for i in onnx.load(str(dst)).graph.initializer}
    assert details["modelopt_calibration_method"] == "entropy" and details["qdq_nodes"] > 0
    assert cos > 0.99


def test_exclusion_by_node_glob(cnn, tmp_path):
    conv = next(n.name for n in onnx.load(str(cnn[0])).graph.node if n.op_type == "Conv")
    dst, details, _ = _quantize(cnn, tmp_path, precision="int8", exclude={"nodes": [conv[:6] + "*", "nope*"]})
    assert conv in details["excluded_nodes"]
    assert details["unmatched_exclude_patterns"] == ["nope*"]
    assert conv not in _fed_by_dq(onnx.load(str(dst)))


def test_exclusion_by_module_path(cnn, tmp_path):
    conv = next(n.name for n in onnx.load(str(cnn[0])).graph.node if n.op_type == "Conv")
    dst, details, _ = _quantize(cnn, tmp_path, precision="int8", exclude={"modules": ["con*"]})
    assert details["excluded_nodes"] == [conv] and details["unmatched_exclude_patterns"] == []
    assert conv not in _fed_by_dq(onnx.load(str(dst)))  # quantized without the exclusion (int8 test)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"calibration": {"method": "percentile"}}, "'percentile' is not available"),
        ({"calibration": {"method": "mse"}}, "'mse' is not available"),
        ({"per_channel": False}, "per_channel: false"),
    ],
)
def test_settings_modelopt_cannot_honour_are_user_errors(tmp_path, settings, message):
    with pytest.raises(UserInputError, match=message):
        quantize(tmp_path / "m.onnx", tmp_path / "q.onnx", QuantizationSettings(**settings), iter([]), ["x"])


def test_unavailable_when_modelopt_cannot_be_imported(monkeypatch):
    for name in [m for m in sys.modules if m == "modelopt" or m.startswith("modelopt.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "modelopt", None)
    assert unavailable(QuantizationSettings()) == Unavailable(
        "nvidia-modelopt is not installed", "pip install 'optcli[modelopt]'"
    )
    assert QUANTIZER.unavailable is unavailable and QUANTIZER.precisions == {"int8", "fp8"}


def test_modelopt_rejection_is_a_stage_error_and_leaves_nothing(cnn, tmp_path):
    batches = iter([{"y": np.zeros((8, 3, 16, 16), np.float32)}])  # no such model input
    with pytest.raises(StageError, match="modelopt quantization failed"):
        quantize(cnn[0], tmp_path / "q.onnx", QuantizationSettings(precision="int8"), batches, ["y"])
    assert list(tmp_path.iterdir()) == []


def test_onnxruntime_quantizer_still_works_after_modelopt(cnn, tmp_path):
    """ModelOpt monkeypatches onnxruntime.quantization for the whole process; quantize() undoes it."""
    from onnxruntime.quantization import calibrate, registry

    from optcli.quantization import ort_static

    def state():
        return calibrate.MinMaxCalibrater.collect_data, calibrate.create_calibrator, {**registry.QDQRegistry}

    before = state()
    _quantize(cnn, tmp_path, precision="int8")
    assert state() == before
    settings = QuantizationSettings(precision="int8")
    details = ort_static.quantize(cnn[0], tmp_path / "ort.onnx", settings, _batches([3, 16, 16]), ["x"])
    assert details["qdq_nodes"] > 0
