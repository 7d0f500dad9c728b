"""`optcli run` on a `pipeline: llm` recipe, as a CI job runs it: exit codes, report.json, the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
RECIPE = ROOT / "recipes" / "llm-tiny.yaml"
# One scheme, few windows, a short benchmark: the same pipeline, fast.
FAST = [
    "quantization.scheme=W4A16",
    "validate.samples=4",
    "benchmark.new_tokens=4",
    "benchmark.prompt_tokens=16",
    "benchmark.iterations=1",
    "benchmark.warmup=0",
]


def optcli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "optcli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def sets(*assignments: str) -> list[str]:
    return [arg for a in assignments for arg in ("--set", a)]


def test_strict_gate_fails_with_exit_1_then_a_rerun_reads_the_cache(tmp_path):
    out = tmp_path / "run"
    strict = optcli(
        "run", str(RECIPE), "--out", str(out), *sets(*FAST, "validate.gates.token_agreement=>= 0.99")
    )
    assert strict.returncode == 1, strict.stdout[-3000:] + strict.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "finished" and report["verdict"] == "fail" and report["pipeline"] == "llm"
    failed = [g for g in report["gates"] if not g["passed"]]
    assert [(g["name"], g["engine"]) for g in failed] == [("token_agreement", "W4A16")]
    scheme = report["llm"]["schemes"]["W4A16"]
    assert 0 < scheme["size_ratio"] < 0.35  # int4 weights, FP32 embeddings and lm_head
    assert scheme["quantization_config"]["format"] == "pack-quantized"
    assert set(scheme["metrics"]) >= {"perplexity", "ppl_increase", "token_agreement", "kl"}
    assert scheme["benchmark"]["decode_tokens_per_s"] > 0 and scheme["benchmark"]["ttft_ms"] > 0
    assert "absolute perplexity is meaningless" in report["llm"]["note"]
    assert report["llm"]["data"]["disjoint"] is True
    config = json.loads((out / "W4A16" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"baseline", "checkpoint_W4A16"} <= set(manifest["artifacts"])
    markdown = (out / "report.md").read_text()
    assert "| W4A16 | pack-quantized |" in markdown and "absolute perplexity is meaningless" in markdown
    # A changed threshold only: the checkpoint and the metrics come from the cache, the gate passes.
    relaxed = optcli("run", str(RECIPE), "--out", str(out), *sets(*FAST, "benchmark.enabled=false"))
    assert relaxed.returncode == 0, relaxed.stdout[-3000:] + relaxed.stderr[-3000:]
    again = json.loads((out / "report.json").read_text())
    cached = {s["name"]: s["details"].get("cached") for s in again["stages"]}
    assert cached["quantize W4A16"] is True and cached["validate W4A16"] is True
    assert again["llm"]["schemes"]["W4A16"]["metrics"] == scheme["metrics"]


def test_overlapping_calibration_and_validation_is_exit_2(tmp_path):
    out = tmp_path / "run"
    done = optcli(
        "run", str(RECIPE), "--out", str(out), *sets(*FAST, "validate.data.kwargs.split=calibration")
    )
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    assert "also in quantization.calibration.data" in done.stdout + done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "error" and report["error"]["exit_code"] == 2
    assert report["error"]["stage"] == "load"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["benchmark.engine=vllm"], "benchmark.python is not set"),
        (["benchmark.engine=vllm", f"benchmark.python={sys.executable}"], "cannot import vllm"),
        (["quantization.tool=llmcompressor"], "'llmcompressor' is not installed"),
    ],
)
def test_missing_backend_is_exit_3_with_the_fix(tmp_path, overrides, message):
    if "llmcompressor" in message:
        try:
            import llmcompressor  # noqa: F401

            pytest.skip("llmcompressor is installed here")
        except ImportError:
            pass
    done = optcli("run", str(RECIPE), "--dry-run", *sets(*overrides), timeout=300)
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert message in output and "hint:" in output
    if "llmcompressor" in message:
        assert "scripts/llm_venv.sh" in output  # the command that builds its environment


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("OPTCLI_SLOW_TESTS"), reason="slow: set OPTCLI_SLOW_TESTS=1")
def test_the_example_recipe_passes_with_all_three_schemes(tmp_path):
    out = tmp_path / "run"
    done = optcli("run", str(RECIPE), "--out", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    schemes = report["llm"]["schemes"]
    assert list(schemes) == ["FP8_DYNAMIC", "W8A8", "W4A16"]
    assert schemes["W4A16"]["size_ratio"] < schemes["W8A8"]["size_ratio"] < 0.5
    assert all(s["metrics"]["kl"] < 0.02 for s in schemes.values())
