"""Each registered graph pass keeps outputs within its stated tolerance on real exported models."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import cosine, resolver_for, run_onnx

from optcli.export import export_onnx, run_torch
from optcli.loading import load_torch_model
from optcli.passes import PASSES
from optcli.recipe.models import ModelSection

MODELS = {
    "cnn": ("models.py:make_cnn", [("x", ["batch", 3, 16, 16])], {"batch": (1, 2, 8)}),
    "two_inputs": (
        "models.py:make_two_inputs",
        [("tokens", ["batch", "seq", 8]), ("mask", ["batch", "seq"])],
        {"batch": (1, 2, 8), "seq": (2, 8, 32)},
    ),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each test model exported once: name -> (onnx path, torch model, resolver)."""
    import sys

    from conftest import MODEL_FILE

    folder = tmp_path_factory.mktemp("models")
    (folder / "models.py").write_text(MODEL_FILE)
    out = {}
    for name, (source, inputs, dims) in MODELS.items():
        section = ModelSection(
            source=source,
            inputs=[{"name": n, "shape": s} for n, s in inputs],
            dims={d: {"min": lo, "opt": opt, "max": hi} for d, (lo, opt, hi) in dims.items()},
        )
        model = load_torch_model(section, folder)
        resolver = resolver_for(*inputs, dims=dims)
        result = export_onnx(
            model,
            resolver,
            folder / f"{name}.onnx",
            exporter="dynamo",
            opset=18,
            output_names=None,
            external_data=None,
        )
        out[name] = (result.path, model, resolver)
    yield out
    for key in [m for m in sys.modules if m.startswith("optcli_user_models")]:
        del sys.modules[key]


def _feeds(resolver, seed=3):
    rng = np.random.default_rng(seed)
    return {
        spec.name: rng.standard_normal(resolver.shape(spec, resolver.sizes(batch_size=4))).astype(np.float32)
        for spec in resolver.inputs
    }


@pytest.mark.parametrize("pass_name", sorted(PASSES))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_pass_within_tolerance(exported, tmp_path, pass_name, model_name):
    src, model, resolver = exported[model_name]
    graph_pass = PASSES[pass_name]
    dst = tmp_path / "out.onnx"
    summary = graph_pass.apply(src, dst, graph_pass.options())
    assert summary
    onnx.checker.check_model(str(dst))
    feeds = _feeds(resolver)
    for got, ref in zip(run_onnx(dst, feeds), run_torch(model, resolver, feeds)):
        assert got.dtype == np.float32  # FP16 conversion keeps FP32 graph outputs
        assert cosine(got, ref) >= graph_pass.tolerance.min_cosine
        rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert rel <= graph_pass.tolerance.max_rel_l2


def test_fp16_really_converts_weights(exported, tmp_path):
    src, _, _ = exported["cnn"]
    PASSES["fp16"].apply(src, tmp_path / "fp16.onnx", PASSES["fp16"].options())
    model = onnx.load(str(tmp_path / "fp16.onnx"))
    types = {init.data_type for init in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_ort_optimize_levels_are_options(exported, tmp_path):
    src, _, _ = exported["cnn"]
    options = PASSES["ort_optimize"].options(level="extended")
    assert "level extended" in PASSES["ort_optimize"].apply(src, tmp_path / "o.onnx", options)


@pytest.mark.parametrize("pass_name", sorted(PASSES))
def test_declared_output_precision_is_what_the_pass_writes(exported, tmp_path, pass_name):
    """`produces_precision` is the only place callers learn a pass's precision, so it must be true:
    a pass declaring fp16 writes FP16 weights, one declaring None leaves FP32 weights FP32."""
    src, _, _ = exported["cnn"]
    graph_pass = PASSES[pass_name]
    graph_pass.apply(src, tmp_path / "out.onnx", graph_pass.options())
    types = {init.data_type for init in onnx.load(str(tmp_path / "out.onnx")).graph.initializer}
    if graph_pass.produces_precision == "fp16":
        assert onnx.TensorProto.FLOAT16 in types
    else:
        assert graph_pass.produces_precision is None
        assert onnx.TensorProto.FLOAT16 not in types and onnx.TensorProto.FLOAT in types


def test_precision_after_follows_the_declarations():
    from optcli.passes import precision_after

    assert precision_after([]) == "fp32"
    assert precision_after(["shape_inference", "ort_optimize"]) == "fp32"
    assert precision_after(["onnxscript_optimize", "fp16", "shape_inference"]) == "fp16"
    assert precision_after(["shape_inference"], start="fp16") == "fp16"
    with pytest.raises(KeyError):
        precision_after(["no_such_pass"])
