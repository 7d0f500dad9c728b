"""Engine basics with real runtimes: labels, state checks, missing artifacts, session options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optcli.backends import EngineContext, create_engine
from optcli.backends.onnxruntime import OnnxRuntimeConfig
from optcli.backends.torch_engine import TorchConfig
from optcli.errors import StageError


def _context(artifacts=None, model=None):
    return EngineContext(
        artifacts=artifacts or {},
        precisions={k: "fp32" for k in artifacts or {}},
        torch_model=lambda: model,
        input_names=["x"],
        output_names=["y"],
    )


def test_missing_artifact_is_a_stage_error_not_a_recursion():
    engine = create_engine(OnnxRuntimeConfig(artifact="quantized"), _context({"exported": "x.onnx"}))
    with pytest.raises(StageError, match="asks for artifact 'quantized'"):
        engine.load()


def test_run_before_load_is_refused():
    engine = create_engine(TorchConfig(), _context(model=torch.nn.Linear(4, 2)))
    with pytest.raises(StageError, match="before load"):
        engine.run({"x": np.zeros((1, 4), np.float32)})


def test_torch_engine_labels_and_bf16_autocast_on_cpu():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).eval()
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    with create_engine(TorchConfig(dtype="bfloat16"), _context(model=model)) as engine:
        assert engine.label == "torch-eager-bf16" and engine.precision == "bf16"
        (out,) = engine.run({"x": x})
    assert out.dtype == np.float32  # outputs come back as float32 arrays whatever the compute dtype
    expected = model(torch.from_numpy(x)).detach().numpy()
    assert np.abs(out - expected).max() < 0.1  # bf16 keeps ~3 significant digits


def test_ort_session_options(tmp_path):
    onnx_path = tmp_path / "m.onnx"
    torch.onnx.export(
        torch.nn.Linear(4, 2).eval(),
        (torch.zeros(1, 4),),
        str(onnx_path),
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "b"}},
    )
    config = OnnxRuntimeConfig(
        artifact="exported", threads=1, allow_spinning=False, graph_optimization="basic"
    )
    with create_engine(config, _context({"exported": onnx_path})) as engine:
        assert engine.describe()["graph_optimization"] == "basic"
        assert engine.run({"x": np.ones((3, 4), np.float32)})[0].shape == (3, 2)
