"""The stage graph's cache: reruns recompute only what changed, damaged entries are recomputed,
failures are never stored, and the run manifest names every artifact with its digest."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from optcli.cache import StageCache, make_key
from optcli.console import SilentUI
from optcli.manifest import read_manifest
from optcli.pipeline import run_recipe
from optcli.recipe import load_recipe

INT8 = (
    "quantization:\n  precision: int8\n  calibration:\n"
    "    samples: 32\n    batch_size: 16\n    method: minmax\n    data: {type: synthetic, seed: 3}"
)


def stages(report: dict) -> dict[str, bool | None]:
    """Stage name -> whether it came from the cache (None: a stage that is never cached)."""
    return {s["name"]: s["details"].get("cached") for s in report["stages"]}


def run(path: Path, out: Path, *overrides: str, cache: StageCache | None = None) -> dict:
    return run_recipe(load_recipe(path, list(overrides)), out, SilentUI(), cache=cache).to_dict()


# --- the store itself -------------------------------------------------------------------------


def test_entries_are_verified_on_read_and_a_damaged_one_is_a_miss(tmp_path):
    cache = StageCache(tmp_path / "cache")
    src = tmp_path / "model.onnx"
    src.write_bytes(b"weights")
    key = make_key("export", {"config": 1})
    assert cache.get("export", key) is None
    cache.put("export", key, {"model.onnx": src}, {"note": "x"})
    entry = cache.get("export", key)
    assert entry is not None and entry.meta == {"note": "x"}
    assert entry.path("model.onnx").read_bytes() == b"weights"
    src.write_bytes(b"changed later")  # the run folder's copy changing does not reach the cache
    assert cache.get("export", key).path("model.onnx").read_bytes() == b"weights"
    entry.path("model.onnx").write_bytes(b"bit rot")
    assert cache.get("export", key) is None  # digest mismatch: dropped, recomputed by the stage
    assert not (tmp_path / "cache" / "export" / key).exists()


def test_keys_follow_every_part_and_disabled_cache_never_hits(tmp_path):
    assert make_key("quantize", {"a": 1, "b": [2]}) == make_key("quantize", {"b": [2], "a": 1})
    assert make_key("quantize", {"a": 1}) != make_key("quantize", {"a": 2})
    assert make_key("quantize", {"a": 1}) != make_key("export", {"a": 1})
    cache = StageCache(tmp_path, enabled=False)
    src = tmp_path / "f"
    src.write_text("x")
    assert cache.put("s", "k", {"f": src}, {}) is None and cache.get("s", "k") is None


def test_prune_removes_only_old_entries(tmp_path):
    cache = StageCache(tmp_path)
    src = tmp_path / "f"
    src.write_text("x")
    cache.put("s", "old", {"f": src}, {})
    record = tmp_path / "s" / "old" / "entry.json"
    data = json.loads(record.read_text())
    data["created"] = time.time() - 3 * 86400
    record.write_text(json.dumps(data))
    cache.put("s", "new", {"f": src}, {})
    removed, freed = cache.prune(86400)
    assert removed == 1 and freed == 1
    assert [e.key for e in cache.entries()] == ["new"]


# --- reruns through the pipeline ----------------------------------------------------------------


def test_gate_only_change_reruns_no_stage_and_loads_no_model(write_recipe, tmp_path):
    path = write_recipe(quantization=INT8)
    first = run(path, tmp_path / "a", "benchmark.enabled=false")
    assert first["verdict"] == "pass"
    assert stages(first)["export"] is False and "load" in stages(first)
    second = run(path, tmp_path / "a", "benchmark.enabled=false", "validate.gates.cosine='>= 0.9999999'")
    ran = stages(second)
    assert "load" not in ran and "build" not in ran  # nothing needed the PyTorch model or an engine
    assert ran == {"export": True, "quantize:int8": True, "validate": True}
    # The new threshold was evaluated on the cached metrics (and fails on INT8), the old one passed.
    cosine = [g for g in second["gates"] if g["name"] == "validate.cosine"]
    assert cosine and not cosine[0]["passed"] and second["verdict"] == "fail"
    assert [e["label"] for e in second["engines"]] == [e["label"] for e in first["engines"]]
    assert second["validation"]["engines"] == first["validation"]["engines"]


def test_calibration_method_change_reruns_quantize_but_not_export(write_recipe, tmp_path):
    path = write_recipe(quantization=INT8)
    first = run(path, tmp_path / "a", "benchmark.enabled=false")
    second = run(path, tmp_path / "a", "benchmark.enabled=false", "quantization.calibration.method=entropy")
    ran = stages(second)
    assert ran["export"] is True and ran["quantize:int8"] is False
    quantize = next(s for s in second["stages"] if s["name"] == "quantize:int8")
    assert quantize["details"]["statistics_reused"]  # only ranges and Q/DQ were redone
    # Validation is keyed by the artifact's digest: new ranges, a new model, new metrics. (A method
    # that happened to give byte-identical Q/DQ would reuse them, rightly.)
    assert ran["validate"] is False
    assert second["validation"]["engines"] != first["validation"]["engines"]


def test_deleting_a_cached_file_recomputes_that_stage(write_recipe, tmp_path, stage_cache):
    path = write_recipe(quantization=INT8)
    run(path, tmp_path / "a", "benchmark.enabled=false")
    (quantized,) = (stage_cache / "quantize").glob("*/quantized.onnx")
    quantized.unlink()
    second = run(path, tmp_path / "b", "benchmark.enabled=false")
    ran = stages(second)
    assert ran["export"] is True and ran["quantize:int8"] is False
    assert second["verdict"] == "pass"
    third = run(path, tmp_path / "c", "benchmark.enabled=false")
    assert stages(third)["quantize:int8"] is True  # stored again after the recomputation


def test_changed_calibration_file_is_a_different_stream(write_recipe, model_dir, tmp_path):
    data = model_dir / "calib.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.normal(size=(32, 16)).astype(np.float32))
    quantization = INT8.replace("data: {type: synthetic, seed: 3}", "data: {type: files, path: calib.npz}")
    path = write_recipe(quantization=quantization)
    run(path, tmp_path / "a", "benchmark.enabled=false")
    np.savez(data, x=(3 * rng.normal(size=(32, 16))).astype(np.float32))  # same name, new contents
    second = run(path, tmp_path / "a", "benchmark.enabled=false")
    assert stages(second)["export"] is True and stages(second)["quantize:int8"] is False


def test_failures_are_never_cached(write_recipe, model_dir, tmp_path, stage_cache):
    (model_dir / "data.py").write_text("def batches():\n    raise ValueError('no data today')\n")
    quantization = INT8.replace(
        "data: {type: synthetic, seed: 3}", "data: {type: callable, callable: data.py:batches}"
    )
    path = write_recipe(quantization=quantization)
    with pytest.raises(Exception, match="no data today"):
        run(path, tmp_path / "a")
    assert (stage_cache / "export").is_dir()  # the stage before the failure was stored
    assert not (stage_cache / "quantize").exists()


def test_no_cache_recomputes_everything(write_recipe, tmp_path):
    path = write_recipe(quantization=INT8)
    run(path, tmp_path / "a", "benchmark.enabled=false")
    again = run(path, tmp_path / "a", "benchmark.enabled=false", cache=StageCache(enabled=False))
    assert not any(stages(again)[name] for name in ("export", "quantize:int8", "validate"))


def test_manifest_lists_every_artifact_with_digest_producer_and_key(write_recipe, tmp_path):
    path = write_recipe(quantization=INT8, passes="passes: [shape_inference]")
    out = tmp_path / "a"
    report = run(path, out, "benchmark.enabled=false")
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == {"exported", "optimized", "quantized"}
    quantized = manifest["artifacts"]["quantized"]
    assert quantized["producer"] == "quantize" and quantized["path"] == "quantized.onnx"
    assert quantized["precision"] == "int8" and len(quantized["sha256"]) == 64
    keys = {s["name"]: s["details"]["cache_key"] for s in report["stages"] if "cache_key" in s["details"]}
    assert quantized["cache_key"] == keys["quantize:int8"]
    artifacts = read_manifest(out)  # re-hashes every file
    assert artifacts["optimized"].path == out / "pass-1-shape_inference.onnx"
    (out / "quantized.onnx").write_bytes((out / "quantized.onnx").read_bytes() + b"\0")
    with pytest.raises(Exception, match="changed since the run wrote it"):
        read_manifest(out)


def test_cache_commands_list_and_prune(write_recipe, tmp_path, stage_cache):
    (stage_cache / "aoti").unlink()  # the packages all tests share are not this test's to prune
    path = write_recipe(quantization=INT8)
    run(path, tmp_path / "a", "benchmark.enabled=false")
    env = {**os.environ, "OPTCLI_CACHE_DIR": str(stage_cache), "COLUMNS": "200"}
    listed = subprocess.run(
        [sys.executable, "-m", "optcli", "cache", "ls"], capture_output=True, text=True, env=env
    )
    assert listed.returncode == 0 and "quantize" in listed.stdout and "export" in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "optcli", "cache", "prune", "--older-than", "soon"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "--older-than" in bad.stdout + bad.stderr
    pruned = subprocess.run(
        [sys.executable, "-m", "optcli", "cache", "prune"], capture_output=True, text=True, env=env
    )
    assert pruned.returncode == 0 and "removed 3 entries" in pruned.stderr
    assert not list(StageCache(stage_cache).entries())


# --- the shape of the graph -----------------------------------------------------------------------

# Every module of optcli/stages is a stage except the shared helpers (docs/design.md names them), so a
# new stage is covered without editing this list.
SHARED = {"__init__", "context", "data", "cached", "keys", "recover", "paths"}
STAGES = tuple(
    sorted(
        p.stem for p in (Path(__file__).parents[1] / "optcli" / "stages").glob("*.py") if p.stem not in SHARED
    )
)


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_another_stage_or_reads_the_report(stage):
    source = (Path(__file__).parents[1] / "optcli" / "stages" / f"{stage}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    others = {f"optcli.stages.{name}" for name in STAGES if name != stage}
    assert not imported & others
    assert "report.model" not in " ".join(imported) and "RunReport" not in source


def test_validation_metrics_are_keyed_by_the_hardware(write_recipe, tmp_path, monkeypatch):
    """INT8 kernels differ by ISA: another CPU (a shared cache, a CI cache restored elsewhere) must
    measure again rather than reuse this machine's metrics."""
    from optcli import environment

    path = write_recipe(quantization=INT8)
    run(path, tmp_path / "a", "benchmark.enabled=false")
    real = environment.describe()
    other = {**real, "cpu": "Some Other CPU", "cpu_features": ["avx2"]}
    monkeypatch.setattr(environment, "describe", lambda: other)
    ran = stages(run(path, tmp_path / "a", "benchmark.enabled=false"))
    assert ran["export"] is True and ran["quantize:int8"] is True  # the artifacts do not depend on it
    assert ran["validate"] is False


def test_a_nested_stage_counts_in_its_own_record_only(tmp_path, monkeypatch):
    """The model's load runs inside the export stage: export's seconds leave the load's out, so the
    stage records add up to the run's time (a fake clock, so no test waits)."""
    import optcli.stages.context as context_module
    from optcli.console import SilentUI
    from optcli.stages.context import StageContext
    from optcli.workspace import Workspace

    clock = [0.0]
    monkeypatch.setattr(context_module.time, "perf_counter", lambda: clock[0])
    ctx = StageContext(Workspace(tmp_path / "run").prepare(), SilentUI(), StageCache(enabled=False), {})
    with ctx.stage("export"):
        clock[0] += 1.0
        with ctx.stage("load"):
            clock[0] += 10.0
        clock[0] += 2.0
    with ctx.stage("quantize"):
        clock[0] += 4.0
    assert {r.name: r.seconds for r in ctx.records} == {"load": 10.0, "export": 3.0, "quantize": 4.0}
