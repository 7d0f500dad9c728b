"""`optcli run` on the small recsys example (three tables): row-wise table quantization, AUC gates,
out-of-range ids. The three runs share one stage cache, so the model is exported once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

# The small variant (3 tables) as a recipe's model and export sections (a .format() template).
SMALL_MODEL = """\
model:
  source: optcli.examples.recsys:load_model
  kwargs: {{variant_name: small}}
  inputs:
    - {{name: dense, shape: [batch, 4], dtype: float32}}
    - {{name: sparse, shape: [batch, 3], dtype: int64}}
  dims:
    batch: {{min: 1, opt: 64, max: 1024}}
  outputs: [ctr]
export: {{exporter: dynamo, opset: 18}}
"""

RECIPE = (
    """
name: recsys-small
"""
    + SMALL_MODEL
    + """passes: []
quantization:
  precision: int8
  {op_types}
  embeddings: {{bits: {bits}, min_rows: 1000}}
  calibration:
    data: {{type: callable, callable: "optcli.examples.recsys:calibration_batches",
            kwargs: {{variant_name: small, samples: 128}}}}
    samples: 128
    batch_size: 64
build:
  - {{name: ort-int8, engine: onnxruntime, artifact: quantized}}
validate:
  data: {data}
  samples: 2048
  batch_size: 1024
  labels: labels
  gates: {gates}
benchmark: {{enabled: false}}
"""
)
VALIDATION = (
    '{type: callable, callable: "optcli.examples.recsys:validation_batches", '
    "kwargs: {variant_name: small, samples: 2048}}"
)
BAD_IDS = """
from optcli.examples.recsys import validation_batches


def batches():
    for index, batch in enumerate(validation_batches("small", samples=2048)):
        if index == 1:
            batch["sparse"][7, 2] = 512  # table 2 has 512 rows
        yield batch
"""


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recsys-cache")


def _run(tmp_path: Path, cache: Path, **fields: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    values = {"bits": 8, "op_types": "op_types: [Gemm]", "data": VALIDATION, "gates": "{}", **fields}
    recipe = tmp_path / "recsys.yaml"
    recipe.write_text(RECIPE.format(**values))
    env = {**os.environ, "OPTCLI_CACHE_DIR": str(cache)}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "optcli", "run", str(recipe), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    report = out / "report.json"
    return proc, json.loads(report.read_text()) if report.exists() else None


def test_int8_dense_and_row_wise_tables_pass(tmp_path, shared_cache):
    gates = '{auc_drop: "<= 0.002", logloss_increase: "<= 0.005", calibration: "<= 1.02"}'
    proc, report = _run(tmp_path, shared_cache, gates=gates)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tables = report["quantization"]["embeddings"]
    assert tables["quantized_tables"] == 2  # 4096 and 1024 rows; the 512-row table stays FP32
    kept = [t for t in tables["tables"] if t["bits"] == 32]
    assert [t["rows"] for t in kept] == [512] and "min_rows" in kept[0]["kept_reason"]
    assert tables["model_bytes"]["ratio"] < 0.45
    model = onnx.load(tmp_path / "run" / "quantized.onnx")
    assert sum(n.op_type == "GatherBlockQuantized" for n in model.graph.node) == 2
    engine = report["validation"]["engines"][0]
    metrics = engine["metrics"]
    assert 0.75 < metrics["auc"] < 0.9 and metrics["auc_drop"] == pytest.approx(
        engine["baseline_metrics"]["auc"] - metrics["auc"]
    )
    names = {g["name"]: g for g in report["gates"] if g["engine"] == "ort-int8"}
    assert {"validate.auc_drop", "validate.logloss_increase", "validate.calibration"} <= set(names)
    assert all(g["passed"] for g in names.values())


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("OPTCLI_SLOW_TESTS"), reason="slow: set OPTCLI_SLOW_TESTS=1")
def test_4bit_tables_fail_an_auc_gate(tmp_path, shared_cache):
    """4-bit tables: sizes reported, and an AUC gate the model misses fails the run (exit 1) with the
    value in the gate record. (At 2048 samples a 4-bit drop of ~1e-4 is inside the sampling noise,
    so the gate is on AUC itself; tests/test_recsys_ranking.py checks a failing auc_drop gate fast.)"""
    proc, report = _run(tmp_path, shared_cache, bits=4, gates='{auc: ">= 0.95", auc_drop: "<= 0.01"}')
    assert proc.returncode == 1, proc.stdout + proc.stderr
    gates = {g["name"]: g for g in report["gates"]}
    assert gates["validate.auc"]["status"] == "fail" and gates["validate.auc"]["value"] < 0.95
    assert gates["validate.auc_drop"]["status"] == "pass"
    tables = report["quantization"]["embeddings"]
    assert tables["bits"] == 4 and tables["table_bytes"]["ratio"] < 0.3
    assert report["verdict"] == "fail"


def test_out_of_range_id_is_exit_2_before_any_engine(tmp_path, shared_cache):
    (tmp_path / "bad_data.py").write_text(BAD_IDS)
    proc, report = _run(tmp_path, shared_cache, data='{type: callable, callable: "bad_data.py:batches"}')
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "input 'sparse'" in proc.stdout + proc.stderr
    message = report["error"]["message"]
    assert "validate.data: input 'sparse' column 2 holds id 512 at sample 519," in message  # 512 + 7
    assert "'tables.2.weight' it indexes (512 rows" in message
    assert report["status"] == "error" and report["error"]["exit_code"] == 2
    assert not (tmp_path / "run" / "quantized.onnx").exists()  # stopped before quantization
