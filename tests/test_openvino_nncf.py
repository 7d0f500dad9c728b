"""OpenVINO engine and NNCF quantizer on real tiny models (skipped when openvino/nncf are missing)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import cosine, resolver_for
from onnx import TensorProto, helper

pytest.importorskip("openvino")
pytest.importorskip("nncf")

from optcli.backends.base import EngineContext
from optcli.backends.openvino_engine import OpenVINOConfig, OpenVINOEngine
from optcli.export import export_onnx, run_torch
from optcli.quantization import QuantizationSettings, nncf_onnx, ort_static
from optcli.quantization.patterns import looks_like_transformer


def _export(model, resolver, path):
    return export_onnx(
        model, resolver, path, exporter="dynamo", opset=18, output_names=None, external_data=None
    ).path


@pytest.fixture
def cnn(exported_cnn):
    return exported_cnn


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from optcli.examples.encoder import text_encoder

    model = text_encoder(vocab=100, d_model=32, heads=2, layers=1, classes=3, max_len=64)
    resolver = resolver_for(
        ("input_ids", ["batch", "seq"]),
        ("attention_mask", ["batch", "seq"]),
        dims={"batch": (1, 2, 8), "seq": (4, 16, 64)},
        dtypes={"input_ids": "int64", "attention_mask": "int64"},
    )
    return _export(model, resolver, tmp_path_factory.mktemp("enc") / "enc.onnx"), model, resolver


def _images(n, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal((size, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def _tokens(n, size=4, seq=16, seed=0):
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n):
        mask = np.ones((size, seq), np.int64)
        mask[0, seq // 2 :] = 0  # one padded row
        batches.append({"input_ids": rng.integers(1, 100, (size, seq)), "attention_mask": mask})
    return batches


def _engine(artifact_path, precision="fp32", **config):
    context = EngineContext(
        artifacts={"quantized": artifact_path},
        precisions={"quantized": precision},
        torch_model=lambda: None,
        input_names=[],
        output_names=[],
    )
    return OpenVINOEngine(OpenVINOConfig(**config), context)


def _ov_cosine(path, model, resolver, feeds, precision="fp32"):
    """The worst cosine over the outputs, OpenVINO (FP32 float layers) vs PyTorch."""
    with _engine(path, precision, precision_hint="f32") as engine:
        got = engine.run(feeds)
    return min(cosine(a, b) for a, b in zip(got, run_torch(model, resolver, feeds), strict=True))


def test_fp32_matches_pytorch_with_dynamic_batch(cnn):
    path, model, resolver = cnn
    with _engine(path, precision_hint="f32") as engine:
        assert engine.label == "openvino-fp32" and engine.precision == "fp32"
        info = engine.describe()
        assert info["inference_precision"] == "fp32" and info["runtime"].startswith("openvino ")
        for batch in (1, 8):
            feeds = _images(1, size=batch)[0]
            assert cosine(engine.run(feeds)[0], run_torch(model, resolver, feeds)[0]) > 0.9999
        bound = engine.bind(feeds)
        engine.run_bound(bound)
        engine.run_bound(bound)
        engine.synchronize()
        # A larger batch after a smaller one was bound (the latency probe before validation): the
        # bound arrays are the request's inputs then, and must not cap the next batch's shape.
        engine.run_bound(engine.bind(_images(1, size=1)[0]))
        feeds = _images(1, size=8)[0]
        assert cosine(engine.run(feeds)[0], run_torch(model, resolver, feeds)[0]) > 0.9999


def test_auto_hint_reports_what_openvino_chose(cnn):
    with _engine(cnn[0]) as engine:
        assert engine.describe()["inference_precision"] in ("fp32", "bf16", "fp16")
        assert engine.precision == engine.describe()["inference_precision"]


def test_runs_ort_quantized_int8(cnn, tmp_path):
    path, model, resolver = cnn
    dst = tmp_path / "ort-int8.onnx"
    ort_static.quantize(path, dst, QuantizationSettings(), iter(_images(4)), ["x"])
    feeds = _images(1, seed=9)[0]
    assert _engine(dst, "int8").precision == "int8"
    assert _ov_cosine(dst, model, resolver, feeds, "int8") > 0.99


def _qdq_in_openvino(path) -> bool:
    """The Q/DQ pairs reach OpenVINO as FakeQuantize, executed with 8-bit runtime precisions."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ops = compiled.get_runtime_model().get_ops()
    precisions = {op.get_rt_info()["runtimePrecision"].astype(str) for op in ops}
    return bool(precisions & {"u8", "i8"})


@pytest.mark.parametrize("method", ["auto", "minmax", "percentile", "entropy"])
def test_nncf_quantizes_cnn(cnn, tmp_path, method):
    path, model, resolver = cnn
    dst = tmp_path / "nncf.onnx"
    settings = QuantizationSettings(calibration={"samples": 24, "batch_size": 8, "method": method})
    details = nncf_onnx.quantize(path, dst, settings, iter(_images(10)), ["x"])
    assert details["model_type"] == "default" and details["preset"] == "mixed"
    assert details["calibration_samples"] == 24 and details["calibration_batches"] == 3  # bounded by samples
    assert [p.name for p in tmp_path.iterdir()] == ["nncf.onnx"]  # nothing else left behind
    ops = {node.op_type for node in onnx.load(str(dst)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and details["qdq_nodes"] > 0
    assert _qdq_in_openvino(dst)
    assert _ov_cosine(dst, model, resolver, _images(1, seed=9)[0], "int8") > 0.98


def test_nncf_symmetric_preset_and_exclusions(cnn, tmp_path):
    path = cnn[0]
    conv = next(n.name for n in onnx.load(str(path)).graph.node if n.op_type == "Conv")
    settings = QuantizationSettings(
        symmetric_activations=True,
        calibration={"samples": 8},
        exclude={"nodes": [conv[:3] + "*", "no_such_node*"], "op_types": ["Gemm"]},
    )
    dst = tmp_path / "nncf.onnx"
    details = nncf_onnx.quantize(path, dst, settings, iter(_images(2)), ["x"])
    assert details["preset"] == "performance" and details["activations"] == "symmetric (signed)"
    assert conv in details["excluded_nodes"] and details["unmatched_exclude_patterns"] == ["no_such_node*"]
    graph = onnx.load(str(dst)).graph
    produced_by = {out: node.op_type for node in graph.node for out in node.output}
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm"):
            assert produced_by.get(node.input[0]) != "DequantizeLinear"


def test_nncf_quantizes_transformer(encoder, tmp_path):
    path, model, resolver = encoder
    dst = tmp_path / "nncf.onnx"
    settings = QuantizationSettings(calibration={"samples": 16, "batch_size": 4})
    details = nncf_onnx.quantize(path, dst, settings, iter(_tokens(4)), ["input_ids", "attention_mask"])
    assert details["model_type"] == "transformer"
    assert details["qdq_nodes"] > 0 and _qdq_in_openvino(dst)
    feeds = _tokens(1, size=3, seq=24, seed=5)[0]  # another batch and sequence length than calibration
    assert _ov_cosine(dst, model, resolver, feeds, "int8") > 0.98


def _graph(*nodes, outputs=("y",)):
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("q", "k", "v", "x")]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs]
    return helper.make_model(helper.make_graph(list(nodes), "g", inputs, outs))


def test_looks_like_transformer(cnn, encoder):
    assert looks_like_transformer(onnx.load(str(encoder[0])))
    assert not looks_like_transformer(onnx.load(str(cnn[0])))
    attention = [
        helper.make_node("MatMul", ["q", "k"], ["s"]),
        helper.make_node("Div", ["s", "x"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["p"]),
        helper.make_node("MatMul", ["p", "v"], ["a"]),
    ]
    norm = helper.make_node("LayerNormalization", ["a", "x"], ["y"])
    assert looks_like_transformer(_graph(*attention, norm))
    assert not looks_like_transformer(_graph(*attention, outputs=("a",)))  # no normalization
    # a classifier head: MatMul -> Softmax output, global-average-pool ReduceMean; no attention
    head = [
        helper.make_node("ReduceMean", ["x"], ["pooled"]),
        helper.make_node("MatMul", ["pooled", "k"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"]),
    ]
    assert not looks_like_transformer(_graph(*head))


def test_unavailable_messages(monkeypatch):
    import importlib.util

    assert OpenVINOEngine.unavailable(OpenVINOConfig(), "int8") is None
    assert nncf_onnx.unavailable(QuantizationSettings()) is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    missing = OpenVINOEngine.unavailable(OpenVINOConfig())
    assert missing.reason == "openvino is not installed" and "optcli[openvino]" in missing.fix
    assert nncf_onnx.unavailable(QuantizationSettings()).reason == "nncf is not installed"


def test_missing_artifact_is_a_stage_error(cnn):
    from optcli.errors import StageError

    engine = _engine(cnn[0], artifact="exported")
    with pytest.raises(StageError, match="asks for artifact 'exported'"):
        _ = engine.label


def test_nncf_excludes_by_module_path(cnn, tmp_path):
    dst = tmp_path / "nncf.onnx"
    settings = QuantizationSettings(calibration={"samples": 8}, exclude={"modules": ["head"]})
    details = nncf_onnx.quantize(cnn[0], dst, settings, iter(_images(1)), ["x"])
    graph = onnx.load(str(dst)).graph
    produced_by = {out: node.op_type for node in graph.node for out in node.output}
    head = [n for n in graph.node if n.name in details["excluded_nodes"] and n.op_type in ("Gemm", "MatMul")]
    assert head and all(produced_by.get(n.input[0]) != "DequantizeLinear" for n in head)
    assert any(produced_by.get(n.input[0]) == "DequantizeLinear" for n in graph.node if n.op_type == "Conv")
