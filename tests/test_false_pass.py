"""No false PASS: zero samples, NaN/Inf outputs, recovery that quantizes nothing, tuning on the judged data.

Real runs of `optcli` in a subprocess (exit code and report.json), plus the same mechanisms
through the real validation code with real ONNX Runtime sessions.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from optcli.backends import EngineContext
from optcli.backends.onnxruntime import OnnxRuntimeConfig, OnnxRuntimeEngine
from optcli.errors import UserInputError
from optcli.quantization import QuantizationSettings
from optcli.quantization.ort_static import quantize
from optcli.quantization.summary import artifact_precision
from optcli.validate import split_samples, validate_engines

NAN_MODEL = '''
import torch
from torch import nn


class NanWhenExported(nn.Module):
    """Eager: a Linear layer. Exported: its square root, NaN wherever the activation is negative
    (as when an exported graph diverges from eager PyTorch)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 8)

    def forward(self, x):
        y = self.fc(x)
        exporting = torch.jit.is_tracing() or torch.compiler.is_exporting()
        return torch.sqrt(y) if exporting else y


def make_nan():
    torch.manual_seed(0)
    return NanWhenExported().eval()
'''

FAST_EXPORT = "export: {exporter: torchscript}"  # a fraction of the dynamo exporter's time
TWO_LAYER = """model:
  source: models.py:make_two_layer
  inputs:
    - {name: x, shape: [batch, 16]}"""


def optcli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPTCLI_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "optcli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _onnx_model(path: Path, op: str) -> Path:
    """x [batch, 4] -> op(x): Identity (the reference) or Sqrt (NaN for every negative input)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], op.lower(), [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def _engines(tmp_path: Path) -> tuple[OnnxRuntimeEngine, OnnxRuntimeEngine]:
    context = EngineContext(
        artifacts={
            "exported": _onnx_model(tmp_path / "identity.onnx", "Identity"),
            "quantized": _onnx_model(tmp_path / "sqrt.onnx", "Sqrt"),
        },
        precisions={"exported": "fp32", "quantized": "int8"},
        torch_model=lambda: None,
        input_names=["x"],
        output_names=["y"],
    )
    baseline = OnnxRuntimeEngine(OnnxRuntimeConfig(name="reference", artifact="exported"), context)
    candidate = OnnxRuntimeEngine(OnnxRuntimeConfig(name="candidate", artifact="quantized"), context)
    return baseline.load(), candidate.load()


# -- 1. zero samples -------------------------------------------------------------------------------


def test_validation_refuses_to_judge_on_zero_samples(tmp_path):
    baseline, candidate = _engines(tmp_path)
    with pytest.raises(UserInputError, match=r"^validate\.data: the source yielded no samples"):
        validate_engines(
            baseline, [candidate], iter([]), output_names=["y"], labels_key="labels", class_output=None
        )


def test_empty_validation_file_exits_2_naming_validate_data(write_recipe, model_dir):
    np.savez(model_dir / "val.npz", x=np.zeros((0, 16), np.float32))
    recipe = write_recipe(
        validate="validate: {data: {type: files, path: val.npz}, samples: 32, gates: {cosine: '>= 0.99'}}",
        benchmark="benchmark: {enabled: false}",
        export=FAST_EXPORT,
    )
    out = model_dir / "run"
    result = optcli("run", recipe, "--out", out, "-q", cwd=model_dir)
    assert result.returncode == 2, result.stderr
    assert "validate.data" in result.stderr and "Traceback" not in result.stderr
    report = report_of(out)
    assert report["status"] == "error" and report["verdict"] == "error"
    assert not any(g["name"].startswith("validate.") for g in report["gates"])


# -- 2. NaN/Inf outputs ----------------------------------------------------------------------------


def test_non_finite_values_are_counted_exactly_and_pass_no_metric(tmp_path):
    baseline, candidate = _engines(tmp_path)
    x = np.random.default_rng(3).standard_normal((40, 4)).astype(np.float32)
    negative = int((x < 0).sum())
    (result,), stats = validate_engines(
        baseline,
        [candidate],
        iter([{"x": x[:16]}, {"x": x[16:]}]),
        output_names=["y"],
        labels_key="labels",
        class_output=0,
    )
    assert stats["samples"] == 40
    assert result.summary["non_finite"] == negative > 0 and result.summary["values"] == 160
    assert math.isnan(result.summary["cosine"]) and result.summary["max_abs"] == math.inf
    assert result.summary["snr_db"] == -math.inf and result.summary["rel_l2"] == math.inf
    assert result.problem == f"{negative} of 160 output values are NaN/Inf"


def test_nan_outputs_fail_every_fidelity_gate_end_to_end(model_dir):
    (model_dir / "nan_model.py").write_text(NAN_MODEL)
    # Thresholds every finite value would meet: only the NaN/Inf rule can fail them.
    recipe = model_dir / "nan.yaml"
    recipe.write_text(
        """name: nan
model:
  source: nan_model.py:make_nan
  inputs:
    - {name: x, shape: [batch, 16]}
export: {exporter: torchscript}
validate:
  samples: 32
  batch_size: 16
  gates: {cosine: ">= -1", max_abs: ">= 0", snr_db: "<= 1000", top1_agreement: ">= 0"}
benchmark: {enabled: false}
"""
    )
    out = model_dir / "run"
    result = optcli("run", recipe, "--out", out, "-q", cwd=model_dir)
    assert result.returncode == 1, result.stderr
    report = report_of(out)
    assert report["verdict"] == "fail"
    (engine,) = report["validation"]["engines"]
    metrics = engine["metrics"]
    # report.json is strict JSON: non-finite metrics are the strings "Infinity" / "NaN"
    assert metrics["non_finite"] > 0 and metrics["max_abs"] == "Infinity" and metrics["cosine"] == "NaN"
    count = f"{int(metrics['non_finite'])} of {int(metrics['values'])} output values are NaN/Inf"
    gates = {g["name"]: g for g in report["gates"] if g["engine"] == engine["engine"]}
    assert set(gates) == {
        "validate.finite",
        "validate.cosine",
        "validate.max_abs",
        "validate.snr_db",
        "validate.top1_agreement",
    }
    for gate in gates.values():
        assert not gate["passed"] and count in gate["detail"], gate
    export = next(g for g in report["gates"] if g["name"] == "export.cosine")
    assert not export["passed"]  # the export check sees the NaN too (worst case is NaN, not 1.0)


# -- 3. the precision comes from the artifact ------------------------------------------------------


def _cnn_batches():
    rng = np.random.default_rng(0)
    return iter([{"x": rng.standard_normal((8, 3, 16, 16)).astype(np.float32)} for _ in range(2)])


@pytest.mark.parametrize(
    ("excluded", "precision", "share", "label"),
    [
        ([], "int8", 1.0, "int8 (100% of MACs)"),
        # Conv: 16*16*8 outputs x 27 MACs = 55296; the head Gemm: 5 x 8 = 40. By op count it would be 50%.
        (["Gemm"], "int8", 55296 / 55336, "int8 (99% of MACs)"),
        (["Conv"], "int8", 40 / 55336, "int8 (0.072% of MACs)"),
        (["Conv", "Gemm"], "fp32", 0.0, "fp32 (no int8 compute op)"),
    ],
)
def test_artifact_precision_is_the_quantized_share_of_macs(
    exported_cnn, tmp_path, excluded, precision, share, label
):
    src, _, _ = exported_cnn
    dst = tmp_path / "q.onnx"
    settings = QuantizationSettings(precision="int8", exclude={"op_types": excluded})
    quantize(src, dst, settings, _cnn_batches(), ["x"])
    result = artifact_precision(dst, "int8", {"batch": 1})
    assert (result.precision, result.basis, result.label) == (precision, "MACs", label)
    assert result.quantized_share == pytest.approx(share, abs=1e-6)


def _recovery_recipe(write_recipe, model_dir, validate_samples: int) -> Path:
    rng = np.random.default_rng(5)
    val = rng.standard_normal((48, 16)).astype(np.float32)
    np.savez(model_dir / "val.npz", x=val)
    # Calibration sees exactly the first 16 validation samples: if validation judged on them,
    # overlap_with_calibration would say so.
    np.savez(model_dir / "calib.npz", x=val[:16])
    return write_recipe(
        model=TWO_LAYER,
        quantization="""quantization:
  precision: int8
  calibration: {data: {type: files, path: calib.npz}, samples: 16, batch_size: 16}
  accuracy: {metric: cosine, max_drop: 1.0e-9, max_trials: 8, samples: 16, diagnose_batches: 1}""",
        validate=f"validate: {{data: {{type: files, path: val.npz}}, samples: {validate_samples}, "
        "batch_size: 16, gates: {cosine: '>= 0.99'}}",
        benchmark="benchmark: {enabled: false}",
        export=FAST_EXPORT,
        build="build: [{engine: onnxruntime, artifact: exported}, "
        "{engine: onnxruntime, artifact: quantized}]",
    )


def test_recovery_that_returns_everything_to_fp32_fails_and_is_not_int8(write_recipe, model_dir):
    """A cosine target only FP32 meets: recovery excludes every layer and would pass."""
    recipe = _recovery_recipe(write_recipe, model_dir, validate_samples=32)
    out = model_dir / "run"
    result = optcli("run", recipe, "--out", out, "-q", cwd=model_dir)
    assert result.returncode == 1, result.stderr
    report = report_of(out)
    recovery = report["quantization"]["recovery"]
    assert recovery["passed"] and recovery["excluded"]  # the accuracy target itself was met...
    gate = next(g for g in report["gates"] if g["name"] == "quantization.accuracy.min_quantized_share")
    assert not gate["passed"] and gate["value"] == 0.0  # ...by quantizing nothing: that fails
    assert "min_quantized_share is 0.5" in gate["detail"] and "no longer an int8 model" in gate["detail"]
    failed = [g["name"] for g in report["gates"] if not g["passed"]]
    assert failed == ["quantization.accuracy.min_quantized_share"]
    artifact = report["quantization"]["artifacts"]["quantized"]
    assert (artifact["precision"], artifact["requested"], artifact["quantized_share"]) == (
        "fp32",
        "int8",
        0.0,
    )
    # Both engines now run FP32: the default labels, made from the precision, get the artifact added.
    engines = {e["engine"]: e for e in report["validation"]["engines"]}
    assert set(engines) == {"onnxruntime-fp32-exported", "onnxruntime-fp32-quantized"}
    engine = engines["onnxruntime-fp32-quantized"]
    assert engine["precision"] == "fp32" and engine["precision_detail"] == "fp32 (no int8 compute op)"
    assert engines["onnxruntime-fp32-exported"]["precision_detail"] == "fp32"
    assert any("has no int8 compute op" in w for w in report["warnings"])
    assert "fp32 (no int8 compute op)" in (out / "report.md").read_text()

    # 4. held out: recovery tuned on samples 0-15, validation judged on 16-47 only.
    validation = report["validation"]
    assert validation["tuning_samples"] == {"first": 0, "count": 16}
    assert validation["held_out_samples"] == {"first": 16, "count": 32} and validation["samples"] == 32
    assert validation["overlap_with_tuning"] == 0
    assert validation["overlap_with_calibration"] == 0  # the calibration samples were the tuning ones
    assert recovery["tuning_samples"] == 16


def test_too_few_samples_to_hold_out_exits_2_with_the_count(write_recipe, model_dir):
    recipe = _recovery_recipe(write_recipe, model_dir, validate_samples=40)
    out = model_dir / "run"
    result = optcli("run", recipe, "--out", out, "-q", cwd=model_dir)
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "validate.data: yields 48 samples, but 56 are needed" in message
    assert "quantization.accuracy.samples" in message and "Traceback" not in message
    assert report_of(out)["status"] == "error"


def test_split_samples_cuts_the_straddling_batch():
    batches = [{"x": np.arange(i, i + 4)} for i in range(0, 12, 4)]
    head, rest = split_samples(batches, 6)
    assert [b["x"].tolist() for b in head] == [[0, 1, 2, 3], [4, 5]]
    assert [b["x"].tolist() for b in rest] == [[6, 7], [8, 9, 10, 11]]
