"""`model.source: hf:<folder>` in the ONNX pipeline: a real (tiny, random-weight) BERT checkpoint folder
saved with save_pretrained, exported, quantized and validated by a real `optcli run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")

RECIPE = """\
name: hf-tiny
model:
  source: hf:checkpoint
  kwargs: {{output: {output}}}
  inputs:
    - {{name: input_ids, shape: [batch, seq], dtype: int64}}
    - {{name: attention_mask, shape: [batch, seq], dtype: int64}}
  dims:
    batch: {{min: 1, opt: 1, max: 4}}
    seq: {{min: 2, opt: 8, max: 16}}
export: {{exporter: dynamo, opset: 18}}
quantization:
  precision: int8
  calibration:
    data: {{type: synthetic, seed: 1, int_ranges: {{input_ids: [1, 100]}}}}
    samples: 8
    batch_size: 2
validate:
  data: {{type: synthetic, seed: 2, int_ranges: {{input_ids: [1, 100]}}}}
  samples: 8
  batch_size: 2
  gates: {{cosine: ">= 0.9"}}
benchmark: {{enabled: false}}
"""


def optcli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPTCLI_DEBUG"}
    command = [sys.executable, "-m", "optcli", *args]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    import torch

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
    )
    transformers.BertModel(config).save_pretrained(root / "checkpoint")
    return root


def test_a_local_checkpoint_folder_runs_end_to_end(folder):
    (folder / "recipe.yaml").write_text(RECIPE.format(output="pooler_output"))
    proc = optcli(folder, "run", "recipe.yaml", "--out", "run", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((folder / "run" / "report.json").read_text())
    assert report["verdict"] == "pass"
    import onnx

    graph = onnx.load(folder / "run" / "exported.onnx", load_external_data=False).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask"]
    assert graph.output[0].type.tensor_type.shape.dim[-1].dim_value == 32  # pooler_output: [batch, hidden]


def test_a_missing_folder_or_output_is_exit_2_naming_model_source(folder):
    missing = RECIPE.format(output="pooler_output").replace("hf:checkpoint", "hf:nope")
    (folder / "missing.yaml").write_text(missing)
    proc = optcli(folder, "run", "missing.yaml", "--dry-run")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())
    assert "model.source" in message and "does not exist" in message and "Traceback" not in message

    (folder / "bad-output.yaml").write_text(RECIPE.format(output="logits"))
    proc = optcli(folder, "run", "bad-output.yaml", "--out", "bad", "--quiet")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    message = " ".join(proc.stderr.split())
    assert "model.kwargs.output" in message and "pooler_output" in message and "Traceback" not in message
