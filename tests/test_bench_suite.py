"""bench/cpu_suite.py and its parts in bench/cpu/: the entry point imports with core dependencies
(torchvision, openvino, nncf only when a model runs), parses its CLI, and re-renders a results.json
into the Markdown table and summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "bench" / "cpu_suite.py"


def _row(engine, p50, speedup, cosine, worst, top1, failed, note=""):
    return {
        "engine": engine,
        "p50_ms": p50,
        "speedup": speedup,
        "cosine": cosine,
        "cosine_min": worst,
        "cosine_global": cosine,
        "top1_agreement": top1,
        "note": note,
        "failed_gates": failed,
    }


ROWS = [
    _row("eager-fp32 (baseline)", [2.0, 2.1], 1.0, 1.0, 1.0, 1.0, None),
    _row("ort-int8-byhand", [1.0, 1.1], 2.0, 0.99, 0.95, 0.9, ["top1_agreement 0.9"], "defaults"),
    _row("optcli: onnxruntime-int8", [1.2, 1.2], 1.8, 0.999, 0.99, 0.99, []),
]
RESULT = {
    "model": "resnet50",
    "recipe": "recipes/resnet50.yaml",
    "overrides": ["target=cpu"],
    "threads": 2,
    "rows": ROWS,
    "chosen": "onnxruntime-int8",
    "ranking": [{"engine": "onnxruntime-int8", "p50_ms": 1.2, "passed": True}],
    "verdict": "pass",
    "gates": {"top1_agreement": ">= 0.95"},
    "timing_feeds": {"x": [1, 3, 224, 224]},
    "accuracy_samples": 64,
    "calibration_samples": 128,
    "seconds": {"total": 90},
}
META = {"cpu": "Test CPU", "cores": 2, "versions": {"torch": "2"}, "passes": 2, "rounds": 7, "iters": 5}
META.update(smoke=False, seconds=120)


def _suite(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SUITE), *args], capture_output=True, text=True, timeout=120)


def test_help_and_bad_model_name():
    result = _suite("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--models", "--passes", "--rounds", "--iters", "--smoke", "--from-json", "--md"):
        assert option in result.stdout
    result = _suite("--models", "resnet50,nope")
    assert result.returncode == 2 and "unknown model(s) ['nope']" in result.stderr


def test_from_json_renders_the_table_and_summary(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"meta": META, "models": [RESULT]}))
    md = tmp_path / "out.md"
    result = _suite("--from-json", str(tmp_path / "results.json"), "--md", str(md))
    assert result.returncode == 0, result.stderr
    text = md.read_text()
    assert text == result.stdout.removesuffix("\n")  # printed, then written
    ours = "| resnet50 | optcli: onnxruntime-int8 | 1.20 | 1.20 | 1.80x | 0.9990 / 0.9900 | 99.0% | pass |"
    assert ours in text
    assert "| resnet50 | ort-int8-byhand | 1.00 | 1.10 | 2.00x | 0.9900 / 0.9500 | 90.0% | FAIL" in text
    assert "fastest by-hand peer ort-int8-byhand (1.05 ms, fails top1_agreement 0.9)" in text
    assert "no by-hand peer passes the recipe's gates" in text


def test_from_json_merges_runs_into_one_table(tmp_path):
    """Two suite runs (say CNNs, then transformers) render as one table with their times summed;
    runs measured with other settings are refused."""
    other = {**RESULT, "model": "minilm", "threads": 1}
    (tmp_path / "a.json").write_text(json.dumps({"meta": META, "models": [RESULT]}))
    (tmp_path / "b.json").write_text(json.dumps({"meta": {**META, "seconds": 60}, "models": [other]}))
    md = tmp_path / "out.md"
    result = _suite("--from-json", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--md", str(md))
    assert result.returncode == 0, result.stderr
    text = md.read_text()
    assert "| resnet50 @2t | ort-int8-byhand" in text and "| minilm @1t | ort-int8-byhand" in text
    assert "Suite run time 3.0 min" in text
    (tmp_path / "c.json").write_text(json.dumps({"meta": {**META, "rounds": 3}, "models": [other]}))
    result = _suite("--from-json", str(tmp_path / "a.json"), str(tmp_path / "c.json"), "--md", str(md))
    assert result.returncode == 2 and "different passes/rounds/iters" in result.stderr


def test_suite_modules_stay_small():
    for path in [SUITE, *(REPO / "bench" / "cpu").glob("*.py")]:
        assert len(path.read_text().splitlines()) <= 250, path
