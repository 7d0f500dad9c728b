"""Static Q/DQ quantization with real calibration through onnxruntime.quantization."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import cosine, resolver_for, run_onnx

from optcli.backends.onnxruntime import safe_level
from optcli.export import export_onnx, run_torch
from optcli.loading import load_torch_model
from optcli.quantization import QuantizationSettings
from optcli.quantization.ort_static import quantize
from optcli.quantization.summary import precision_by_op
from optcli.recipe.models import ModelSection


@pytest.fixture
def cnn(exported_cnn):
    return exported_cnn


def _batches(n=4, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return iter([{"x": rng.standard_normal((size, 3, 16, 16)).astype(np.float32)} for _ in range(n)])


def _quantize(cnn, tmp_path, **settings):
    src, model, resolver = cnn
    dst = tmp_path / "q.onnx"
    details = quantize(src, dst, QuantizationSettings(**settings), _batches(), ["x"])
    x = np.random.default_rng(9).standard_normal((8, 3, 16, 16)).astype(np.float32)
    level = safe_level("all", settings["precision"])
    return dst, details, cosine(run_onnx(dst, {"x": x}, level)[0], run_torch(model, resolver, {"x": x})[0])


def _elem_types(path):
    model = onnx.load(str(path))
    return {init.data_type for init in model.graph.initializer}, model


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_int8_qdq_keeps_outputs_close(cnn, tmp_path, method):
    dst, details, cos = _quantize(cnn, tmp_path, precision="int8", calibration={"method": method})
    types, _model = _elem_types(dst)
    assert onnx.TensorProto.INT8 in types  # per-channel weights stored as int8
    assert details["qdq_nodes"] > 0 and details["calibration_batches"] == 4
    assert details["activations"] == "asymmetric (unsigned)"
    assert cos > 0.99


def test_fp8_uses_e4m3(cnn, tmp_path):
    dst, details, cos = _quantize(cnn, tmp_path, precision="fp8")
    types, _ = _elem_types(dst)
    assert onnx.TensorProto.FLOAT8E4M3FN in types
    assert details["calibration_method"] == "minmax"
    assert cos > 0.99


def test_symmetric_activations_for_tensorrt(cnn, tmp_path):
    dst, details, _ = _quantize(cnn, tmp_path, precision="int8", symmetric_activations=True)
    model = onnx.load(str(dst))
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    zero_points = [
        z for z in model.graph.initializer if z.name.endswith("zero_point") and z.data_type in eight_bit
    ]
    assert zero_points and all(z.data_type == onnx.TensorProto.INT8 for z in zero_points)
    assert all(not onnx.numpy_helper.to_array(z).any() for z in zero_points)
    assert details["activations"] == "symmetric (signed)"


def test_exclusions_by_node_glob_and_op_type(cnn, tmp_path):
    src = cnn[0]
    conv = next(n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Conv")
    dst, details, _ = _quantize(
        cnn, tmp_path, precision="int8", exclude={"nodes": [conv[:3] + "*"], "op_types": ["Gemm"]}
    )
    assert conv in details["excluded_nodes"]
    model = onnx.load(str(dst))
    produced_by = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            # no DequantizeLinear feeds an excluded node's activation input
            assert (
                produced_by.get(node.input[0]) is None
                or produced_by[node.input[0]].op_type != "DequantizeLinear"
            )


def test_unmatched_exclusion_is_reported(cnn, tmp_path):
    _, details, _ = _quantize(cnn, tmp_path, precision="int8", exclude={"nodes": ["no_such_node*"]})
    assert details["unmatched_exclude_patterns"] == ["no_such_node*"]


def test_module_selectors_survive_reexport_with_the_other_exporter(model_dir, tmp_path):
    """The same `exclude.modules` glob keeps the same layer in FP32 whichever exporter produced the graph."""
    section = ModelSection(source="models.py:make_cnn", inputs=[{"name": "x", "shape": ["batch", 3, 16, 16]}])
    model = load_torch_model(section, model_dir)
    resolver = resolver_for(("x", ["batch", 3, 16, 16]))
    float_ops = {}
    for exporter in ("dynamo", "torchscript"):
        src = export_onnx(
            model,
            resolver,
            tmp_path / f"{exporter}.onnx",
            exporter=exporter,
            opset=18,
            output_names=None,
            external_data=None,
        ).path
        dst = tmp_path / f"{exporter}-q.onnx"
        details = quantize(src, dst, QuantizationSettings(exclude={"modules": ["head"]}), _batches(), ["x"])
        assert details["excluded_nodes"] and not details["unmatched_exclude_patterns"]
        graph = onnx.load(str(dst)).graph
        produced_by = {out: node for node in graph.node for out in node.output}
        float_ops[exporter] = sorted(
            node.op_type
            for node in graph.node
            if node.op_type in ("Conv", "Gemm", "MatMul")
            and getattr(produced_by.get(node.input[0]), "op_type", None) != "DequantizeLinear"
        )
    assert float_ops["dynamo"] == float_ops["torchscript"] == ["Gemm"]  # the head only; the conv is INT8


def test_transformer_defaults_quantize_only_matrix_products(tmp_path):
    from optcli.examples.encoder import text_encoder

    model = text_encoder(vocab=100, d_model=32, heads=2, layers=1, classes=3, max_len=64)
    resolver = resolver_for(
        ("input_ids", ["batch", "seq"]),
        ("attention_mask", ["batch", "seq"]),
        dims={"batch": (1, 2, 4), "seq": (4, 8, 16)},
        dtypes={"input_ids": "int64", "attention_mask": "int64"},
    )
    src = export_onnx(
        model,
        resolver,
        tmp_path / "enc.onnx",
        exporter="dynamo",
        opset=18,
        output_names=None,
        external_data=None,
    ).path
    rng = np.random.default_rng(0)
    batches = [
        {"input_ids": rng.integers(1, 100, (4, 8)), "attention_mask": np.ones((4, 8), np.int64)}
        for _ in range(3)
    ]
    names = ["input_ids", "attention_mask"]
    auto = quantize(src, tmp_path / "auto.onnx", QuantizationSettings(), iter(batches), names)
    assert auto["defaults_applied"] and "transformer blocks detected" in auto["defaults_applied"][0]
    precision = precision_by_op(onnx.load(str(tmp_path / "auto.onnx")))
    assert precision["MatMul"].get("int8")
    for op in ("Add", "Softmax", "LayerNormalization"):
        assert set(precision.get(op, {"fp32": 1})) == {"fp32"}, op
    off = quantize(
        src, tmp_path / "off.onnx", QuantizationSettings(transformer_defaults=False), iter(batches), names
    )
    assert not off["defaults_applied"]
