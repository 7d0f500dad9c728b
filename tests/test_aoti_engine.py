"""`engine: aoti`: torch.export + AOTInductor on the CPU, for real (g++ compiles the package).

Compiling the tiny model takes ~20-80 s on 2 cores, so the package cache lives in a persistent folder
($OPTCLI_TEST_CACHE, default ~/.cache/optcli-test) shared by this module's tests: the first run
compiles, later runs (and every later test) load the cached package. Everything else is per test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optcli.backends.aoti_engine import (
    CACHE_STAGE,
    PACKAGE,
    AotiConfig,
    AotiEngine,
    example_inputs,
    package_key,
    program_digest,
)
from optcli.backends.base import EngineContext
from optcli.cache import StageCache
from optcli.environment import cpu_flags
from optcli.errors import StageError
from optcli.plan import Machine, make_plan
from optcli.specs import DimRange, InputSpec

torch = pytest.importorskip("torch")
if AotiEngine.unavailable(AotiConfig()) is not None:
    pytest.skip(f"{AotiEngine.unavailable(AotiConfig()).reason}", allow_module_level=True)

BUILD = "build:\n  - {engine: aoti}"
# Validation at batch 16 and benchmark at batch 1 and 3: one package, three batch sizes (dynamic dim).
SECTIONS = {
    "build": BUILD,
    "validate": "validate: {samples: 32, batch_size: 16, gates: {cosine: '>= 0.9999'}}",
    "benchmark": "benchmark: {batch_sizes: [1, 3], warmup: 1, iterations: 5}",
}


@pytest.fixture(scope="module")
def package_cache() -> Path:
    """The packages every test shares (conftest links each test's `<stage cache>/aoti` here)."""
    from conftest import AOTI_PACKAGES

    AOTI_PACKAGES.mkdir(parents=True, exist_ok=True)
    return AOTI_PACKAGES


def optcli_run(recipe: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "optcli", "run", str(recipe), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, package_cache):
    """One real `optcli run` with the aoti engine (compiles on a cold cache), in its own folder."""
    from conftest import MODEL_FILE, tiny_recipe_text

    folder = tmp_path_factory.mktemp("aoti")
    (folder / "models.py").write_text(MODEL_FILE)
    recipe = folder / "recipe.yaml"
    recipe.write_text(tiny_recipe_text(**SECTIONS))
    cache = folder / "stage-cache"
    cache.mkdir()
    (cache / CACHE_STAGE).symlink_to(package_cache, target_is_directory=True)
    env = {**os.environ, "OPTCLI_CACHE_DIR": str(cache)}
    result = subprocess.run(
        [sys.executable, "-m", "optcli", "run", str(recipe), "--out", str(folder / "run")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    return folder, recipe, result


def test_aoti_engine_is_built_validated_and_benchmarked(first_run):
    folder, _, result = first_run
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((folder / "run" / "report.json").read_text())
    engine = next(e for e in report["engines"] if e["label"] == "aoti-fp32")
    assert engine["runtime"].endswith("AOTInductor") and engine["device"] == "cpu"
    package = Path(engine["path"])
    assert package == folder / "run" / "aoti" / "aoti-fp32.pt2" and package.stat().st_size > 0
    assert [p.name for p in package.parent.iterdir()] == ["aoti-fp32.pt2"]  # no temp file left behind
    metrics = next(e for e in report["validation"]["engines"] if e["engine"] == "aoti-fp32")["metrics"]
    assert metrics["cosine"] > 0.9999 and metrics["non_finite"] == 0
    timed = {(r["engine"], r["batch_size"]) for r in report["benchmark"]["results"]}
    assert {("aoti-fp32", 1), ("aoti-fp32", 3)} <= timed
    assert report["verdict"] == "pass"


def test_a_second_run_loads_the_cached_package_and_a_damaged_one_is_dropped(
    first_run, package_cache, tmp_path
):
    _, recipe, _ = first_run
    result = optcli_run(recipe, tmp_path / "again")
    assert result.returncode == 0, result.stderr[-3000:]
    engine = next(
        e
        for e in json.loads((tmp_path / "again" / "report.json").read_text())["engines"]
        if e["label"] == "aoti-fp32"
    )
    assert engine["package_cached"] is True and engine["compile_s"] is None
    entries = [e for e in StageCache(package_cache.parent).entries() if e.stage == CACHE_STAGE]
    entry = next(e for e in entries if e.files[PACKAGE] == sha256(Path(engine["path"])))
    # Verify on read: a damaged copy of that entry is not handed out (the engine would recompile).
    damaged = tmp_path / "damaged"
    shutil.copytree(entry.folder, damaged / CACHE_STAGE / entry.key)
    with open(damaged / CACHE_STAGE / entry.key / PACKAGE, "r+b") as handle:
        handle.seek(100)
        handle.write(b"\0" * 16)
    assert StageCache(damaged).get(CACHE_STAGE, entry.key) is None
    assert not (damaged / CACHE_STAGE / entry.key).exists()


class Scaled(torch.nn.Module):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(16, 4)
        self.linear.weight.data *= scale

    def forward(self, x):
        return self.linear(x)


SPECS = [InputSpec(name="x", shape=["batch", 16])]
DIMS = {"batch": DimRange(min=1, max=32)}


def export(model):
    examples, dynamic = example_inputs(torch, SPECS, DIMS, torch.float32, "cpu")
    assert examples[0].shape == (2, 16) and str(dynamic[0][0]) != ""  # size 1 would be specialized away
    return torch.export.export(model.eval(), tuple(examples), dynamic_shapes=tuple(dynamic))


def test_package_key_follows_program_weights_and_settings():
    one, again, scaled = export(Scaled()), export(Scaled()), export(Scaled(2.0))
    assert program_digest(one) == program_digest(again)  # no addresses or paths in the digest
    assert program_digest(one) != program_digest(scaled)  # same graph, other weights
    facts = {"cpu_flags": ["avx2"]}
    assert package_key(one, AotiConfig(), facts) == package_key(again, AotiConfig(threads=2), facts)
    assert package_key(one, AotiConfig(), facts) != package_key(one, AotiConfig(dtype="bfloat16"), facts)
    assert package_key(one, AotiConfig(), facts) != package_key(one, AotiConfig(), {"cpu_flags": ["avx512f"]})


class FixedBatch(torch.nn.Module):
    def forward(self, x):
        return x + torch.ones(2, 16)  # broadcasting fixes batch to 2: the dim is not dynamic


def test_a_model_that_fixes_a_dynamic_dim_is_named_in_one_paragraph(tmp_path):
    context = EngineContext(
        {}, {}, FixedBatch, ["x"], ["y"], {"inputs": SPECS, "dims": DIMS, "work_dir": tmp_path}
    )
    with pytest.raises(StageError) as info:
        AotiEngine(AotiConfig(), context).load()
    assert info.value.exit_code == 2 and "\n" not in info.value.message
    assert "engine 'aoti-fp32': torch.export could not capture the model" in info.value.message
    assert "Constraints violated (batch)" in info.value.message  # torch names the dim
    assert "min == max" in info.value.message
    assert not (tmp_path / "aoti").exists()  # failed before any compile


def test_low_precision_on_the_cpu_needs_the_isa():
    has_bf16 = any(f.startswith(("avx512_bf16", "amx_bf16")) for f in cpu_flags())
    missing = AotiEngine.unavailable(AotiConfig(dtype="bfloat16"))
    assert (missing is None) == has_bf16
    if missing is not None:
        assert "bf16 on the CPU needs avx512_bf16 or amx_bf16" in missing.reason and "float32" in missing.fix


def test_no_compiler_is_exit_3_with_the_fix(write_recipe, model_dir):
    path = write_recipe(build=BUILD)
    env = {**os.environ, "CXX": "no-such-compiler-here"}
    result = subprocess.run(
        [sys.executable, "-m", "optcli", "run", str(path), "--out", str(model_dir / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 3, result.stderr
    assert "no compiler was found" in result.stderr and "install g++" in result.stderr
    assert not (model_dir / "run" / "exported.onnx").exists()


def test_cpu_target_plans_aoti_once(tiny_recipe):
    machine = Machine(cpu_flags=("avx2",), packages=frozenset(), gpus=())
    plan = make_plan(tiny_recipe(target="target: cpu", build="build: []"), machine)
    # Neither FP32 nor BF16 is a default candidate (measured slowest, at a long compile), even
    # where the CPU has BF16 instructions.
    assert [e.label for e in plan.engines if e.config.engine == "aoti"] == []
    bf16 = Machine(cpu_flags=("avx512_bf16", "amx_bf16"), packages=frozenset(), gpus=())
    planned = make_plan(tiny_recipe(target="target: cpu", build="build: []"), bf16)
    labels = {e.label for e in planned.engines} | {m["engine"] for m in planned.not_available}
    assert not any(label.startswith("aoti") for label in labels)
    assert "ov-bf16" in labels
    # A recipe engine computing the same thing is not planned twice (it would also clash on its label).
    with_recipe = make_plan(tiny_recipe(target="target: cpu", build=BUILD), machine)
    assert [e.origin for e in with_recipe.engines if e.config.engine == "aoti"] == ["recipe"]
