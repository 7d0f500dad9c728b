"""Export real torch models to ONNX and check them with ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from helpers import cosine, resolver_for, run_onnx

from optcli.errors import UserInputError
from optcli.export import export_onnx, run_torch
from optcli.loading import load_torch_model
from optcli.recipe.models import ModelSection


def _model(model_dir, source: str, **kwargs):
    section = ModelSection(source=source, inputs=[{"name": "x", "shape": ["batch", 16]}], **kwargs)
    return load_torch_model(section, model_dir)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_export_has_dynamic_batch_and_matches_torch(model_dir, tmp_path, exporter):
    model = _model(model_dir, "models.py:make_two_layer")
    resolver = resolver_for(("x", ["batch", 16]))
    result = export_onnx(
        model,
        resolver,
        tmp_path / "m.onnx",
        exporter=exporter,
        opset=18,
        output_names=["logits"],
        external_data=None,
    )
    graph = onnx.load(str(result.path)).graph
    assert [o.name for o in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic, not a fixed size
    for batch in (1, 17):
        x = np.random.default_rng(batch).standard_normal((batch, 16)).astype(np.float32)
        (onnx_out,) = run_onnx(result.path, {"x": x})
        (torch_out,) = run_torch(model, resolver, {"x": x})
        assert onnx_out.shape == (batch, 4)
        np.testing.assert_allclose(onnx_out, torch_out, rtol=1e-4, atol=1e-5)


def test_two_inputs_shared_dynamic_dim_and_dict_outputs(model_dir, tmp_path):
    model = _model(model_dir, "models.py:make_two_inputs")
    resolver = resolver_for(
        ("tokens", ["batch", "seq", 8]),
        ("mask", ["batch", "seq"]),
        dims={"batch": (1, 2, 8), "seq": (2, 16, 64)},
    )
    result = export_onnx(
        model,
        resolver,
        tmp_path / "m.onnx",
        exporter="dynamo",
        opset=18,
        output_names=None,
        external_data=None,
    )
    assert result.output_names == ["output_0", "output_1"]
    rng = np.random.default_rng(0)
    feeds = {
        "tokens": rng.standard_normal((3, 40, 8)).astype(np.float32),
        "mask": (rng.random((3, 40)) > 0.3).astype(np.float32),
    }
    pooled, hidden = run_onnx(result.path, feeds)
    ref_pooled, ref_hidden = run_torch(model, resolver, feeds)
    assert hidden.shape == (3, 40, 8)
    assert cosine(pooled, ref_pooled) > 0.99999 and cosine(hidden, ref_hidden) > 0.99999


def test_external_data_on_request(model_dir, tmp_path):
    model = _model(model_dir, "models.py:make_two_layer", kwargs={"hidden": 512})
    resolver = resolver_for(("x", ["batch", 16]))
    result = export_onnx(
        model,
        resolver,
        tmp_path / "m.onnx",
        exporter="dynamo",
        opset=18,
        output_names=None,
        external_data=True,
    )
    assert (tmp_path / "m.onnx.data").stat().st_size > 512 * 16 * 4
    x = np.ones((2, 16), np.float32)
    np.testing.assert_allclose(
        run_onnx(result.path, {"x": x})[0], run_torch(model, resolver, {"x": x})[0], rtol=1e-4, atol=1e-5
    )


def test_torchscript_and_pt2_sources_load_and_export(model_dir, tmp_path):
    eager = _model(model_dir, "models.py:make_two_layer")
    x = torch.randn(2, 16)
    torch.jit.save(torch.jit.trace(eager, x), str(tmp_path / "m.ts"))
    torch.export.save(torch.export.export(eager, (x,)), str(tmp_path / "m.pt2"))
    resolver = resolver_for(("x", ["batch", 16]))
    for name in ("m.ts", "m.pt2"):
        loaded = _model(tmp_path, name)
        out = export_onnx(
            loaded,
            resolver,
            tmp_path / f"{name}.onnx",
            exporter="dynamo",
            opset=18,
            output_names=None,
            external_data=None,
        )
        feeds = {"x": x.numpy()}
        np.testing.assert_allclose(
            run_onnx(out.path, feeds)[0], eager(x).detach().numpy(), rtol=1e-4, atol=1e-5
        )
    assert (
        "TorchScript"
        in export_onnx(
            _model(tmp_path, "m.ts"),
            resolver,
            tmp_path / "again.onnx",
            exporter="dynamo",
            opset=18,
            output_names=None,
            external_data=None,
        ).notes[0]
    )


def test_checkpoint_is_applied(model_dir, tmp_path):
    donor = _model(model_dir, "models.py:make_two_layer")
    with torch.no_grad():
        for p in donor.parameters():
            p.add_(1.0)
    torch.save(donor.state_dict(), tmp_path / "ckpt.pt")
    loaded = _model(model_dir, "models.py:make_two_layer", checkpoint=str(tmp_path / "ckpt.pt"))
    assert torch.equal(loaded.fc1.weight, donor.fc1.weight)


def test_wrong_input_shape_is_a_user_error(model_dir):
    model = _model(model_dir, "models.py:make_two_layer")
    with pytest.raises(UserInputError, match=r"model.inputs: .*x\(2, 15\)"):
        run_torch(model, resolver_for(("x", ["batch", 15])), {"x": np.zeros((2, 15), np.float32)})


class _Embedder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(10, 4)

    def forward(self, ids):
        return self.embedding(ids).mean(1)


def test_output_name_clashing_with_an_internal_tensor_is_a_user_error(tmp_path):
    resolver = resolver_for(("ids", ["batch", 3]), dtypes={"ids": "int64"})
    with pytest.raises(UserInputError, match=r"model\.outputs: .*'embedding'"):  # the Gather is named so too
        export_onnx(
            _Embedder().eval(),
            resolver,
            tmp_path / "m.onnx",
            exporter="dynamo",
            opset=18,
            output_names=["embedding"],
            external_data=None,
        )
