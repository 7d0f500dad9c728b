"""`optcli run` with benchmark.mode slo on the small recsys example: the search runs for the baseline
and the engine on validation samples, report.json/report.md carry it, and its gates set the exit
code. Tiny search settings (batches up to 64, a few runs per probe) keep it fast; both runs share
one stage cache, so the model is exported once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_recsys_e2e import SMALL_MODEL

from optcli.report.schema import report_schema

RECIPE = (
    """
name: recsys-slo
"""
    + SMALL_MODEL
    + """build:
  - {{name: ort-fp32, engine: onnxruntime, artifact: exported}}
validate:
  data: {{type: callable, callable: "optcli.examples.recsys:validation_batches",
          kwargs: {{variant_name: small, samples: 512}}}}
  samples: 512
  batch_size: 256
  labels: labels
benchmark:
  mode: slo
  slo: {{p99_ms: {p99_ms}, max_batch: 64, refine: 2, threads: [null, 1], warmup: 1, iterations: 8,
         time_budget_s: 0.2}}
  gates: {{slo_throughput: "> 0", slo_speedup: ">= 0.01"}}
"""
)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("recsys-slo-cache")


def _run(tmp_path: Path, cache: Path, p99_ms: str) -> tuple[subprocess.CompletedProcess, dict]:
    recipe = tmp_path / "recsys.yaml"
    recipe.write_text(RECIPE.format(p99_ms=p99_ms))
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "optcli", "run", str(recipe), "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "OPTCLI_CACHE_DIR": str(cache), "COLUMNS": "200"},
        cwd=tmp_path,
        timeout=600,
    )
    assert (out / "report.json").exists(), proc.stdout + proc.stderr
    return proc, json.loads((out / "report.json").read_text())


def _valid(report: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (the dev extra) checks report.json")
    jsonschema.Draft202012Validator(report_schema()).validate(report)


def test_slo_mode_fills_the_report_and_passes_its_gates(tmp_path, shared_cache):
    proc, report = _run(tmp_path, shared_cache, "1000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bench = report["benchmark"]
    assert bench["mode"] == "slo" and bench["results"] == []
    slo = bench["slo"]
    assert (slo["p99_ms"], slo["max_batch"], slo["data"]) == (1000, 64, "validate.data")
    assert slo["samples"] == 64  # cut from the validation samples
    results = {r["engine"]: r for r in slo["results"]}
    assert list(results) == [bench["baseline"], "ort-fp32"]
    for result in results.values():
        # A budget of 1 s: every batch meets it, so the search reaches the cap for both thread settings.
        assert result["batch_size"] is not None and 0 < result["p99_ms"] <= 1000
        assert result["throughput"] > 0
        assert {(p["batch_size"], p["threads"]) for p in result["probes"]} >= {(64, None), (64, 1)}
        assert all(p["meets"] and p["runs"] >= 5 for p in result["probes"])
    assert results[bench["baseline"]]["speedup"] == 1.0
    ort = results["ort-fp32"]
    assert ort["speedup"] == pytest.approx(ort["throughput"] / results[bench["baseline"]]["throughput"])
    gates = {g["name"]: g for g in report["gates"] if g["name"].startswith("benchmark.")}
    assert set(gates) == {"benchmark.slo_throughput", "benchmark.slo_speedup"}
    assert all(g["engine"] == "ort-fp32" and g["status"] == "pass" for g in gates.values())
    assert gates["benchmark.slo_throughput"]["value"] == ort["throughput"]
    assert f"batch {ort['batch_size']}" in gates["benchmark.slo_throughput"]["detail"]
    _valid(report)
    assert "Throughput at p99 <= 1000 ms (64 samples of validate.data)" in proc.stderr
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "| engine | batch | threads | p99 ms | samples/s | vs baseline |" in markdown
    assert "| ort-fp32 | " in markdown


def test_an_impossible_budget_fails_the_slo_gate_with_the_reason(tmp_path, shared_cache):
    proc, report = _run(tmp_path, shared_cache, "0.0001")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert report["verdict"] == "fail"
    results = report["benchmark"]["slo"]["results"]
    assert all(r["batch_size"] is None and r["throughput"] == 0 for r in results)
    assert all([p["batch_size"] for p in r["probes"]] == [1, 1] for r in results)  # batch 1, per threads
    gates = {g["name"]: g for g in report["gates"]}
    failed = gates["benchmark.slo_throughput"]
    assert failed["status"] == "fail" and failed["value"] == 0
    assert failed["detail"] == "no batch size meets p99 <= 0.0001 ms"
    speedup = gates["benchmark.slo_speedup"]
    assert speedup["status"] == "fail" and speedup["value"] is None
    assert "the baseline meets p99 <= 0.0001 ms at no batch size" in speedup["detail"]
    assert "no batch size meets p99 <= 0.0001 ms" in proc.stderr
    _valid(report)


@pytest.mark.parametrize(
    ("override", "field", "message"),
    [
        ("benchmark.slo=null", "benchmark.slo", "benchmark.mode is slo: set the budget here"),
        ("benchmark.mode=latency", "benchmark.mode", "benchmark.slo is set but mode is latency"),
        ("benchmark.gates.p50_ms=<= 5", "benchmark.gates", "p50_ms are benchmark.mode latency gates"),
        ("benchmark.slo.max_batch=8192", "benchmark.slo.max_batch", "above model.dims.batch.max (4096)"),
    ],
)
def test_slo_settings_that_disagree_are_exit_2_naming_the_field(override, field, message):
    recipe = Path(__file__).parents[1] / "recipes" / "recsys.yaml"
    proc = subprocess.run(
        [sys.executable, "-m", "optcli", "recipe", "validate", str(recipe), "--set", override],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    text = " ".join(proc.stderr.split())  # the console wraps long lines
    assert f"field '{field}'" in text and message in text
    assert "Traceback" not in text
