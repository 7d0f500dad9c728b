"""Registries are the only place to edit: every module imports with core dependencies only, entry
names match the recipe literals, the recipe's schema, checks and descriptions come from the entries,
and `optcli doctor` lists every optional package an entry declares."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Literal, get_args

import pytest
from pydantic import ValidationError

import optcli
from optcli.backends import ENGINES
from optcli.calibration import SOURCES
from optcli.optional import OptionalPackage
from optcli.passes import PASSES
from optcli.quantization import QUANTIZERS, QuantizationSettings
from optcli.quantization.registry import ALL_METHODS
from optcli.recipe import load_recipe

REPO = Path(__file__).resolve().parent.parent
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(optcli.__path__, "optcli.") if m.name != "optcli.__main__"
)
QUANTIZED = ("int8", "fp8")


def _optcli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "optcli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    importlib.import_module(module)


def _literal(model, field):
    return get_args(model.model_fields[field].annotation)[0]


def test_registries_match_recipe_names():
    for name, graph_pass in PASSES.items():
        assert _literal(graph_pass.options, "name") == name
    for name, kind in SOURCES.items():
        assert _literal(kind.options, "type") == name
    for name, kind in ENGINES.items():
        assert _literal(kind.config, "engine") == name
    for name, quantizer in QUANTIZERS.items():
        assert quantizer.name == name
    quantizer_literal = QuantizationSettings.model_fields["quantizer"].annotation
    assert quantizer_literal.__origin__ is Literal and list(get_args(quantizer_literal)) == list(QUANTIZERS)


def test_recipe_import_stays_light():
    """Loading and validating recipes must not pay for onnx / onnxruntime (quantizers and passes
    import them inside their functions)."""
    code = "import sys, optcli.recipe; print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- quantizers: what each declares is what the recipe accepts ------------------------------------


@pytest.mark.parametrize("name", sorted(QUANTIZERS))
def test_quantizer_declarations_decide_what_validates(name):
    quantizer = QUANTIZERS[name]
    assert quantizer.precisions and quantizer.precisions <= set(QUANTIZED)
    assert quantizer.methods and quantizer.methods <= ALL_METHODS and "auto" in quantizer.methods
    for precision in QUANTIZED:
        for method in sorted(ALL_METHODS):
            fp8_only = method == "distribution" and precision != "fp8"  # a precision fact, any quantizer
            supported = precision in quantizer.precisions and method in quantizer.methods and not fp8_only
            settings = {"quantizer": name, "precision": precision, "calibration": {"method": method}}
            if supported:
                QuantizationSettings(**settings)
                continue
            with pytest.raises(ValidationError) as info:
                QuantizationSettings(**settings)
            assert (name in str(info.value)) or fp8_only, (settings, str(info.value))


def test_modelopt_refusal_beyond_declarations_validates_early():
    with pytest.raises(ValidationError, match="per_channel: false is not available with quantizer: modelopt"):
        QuantizationSettings(quantizer="modelopt", per_channel=False)
    QuantizationSettings(quantizer="modelopt", per_channel=False, precision="fp16")  # no quantizer runs


def test_recipe_errors_and_schema_list_exactly_the_registered_quantizers(write_recipe):
    path = write_recipe(quantization="quantization: {quantizer: tflite}")
    result = _optcli("recipe", "validate", str(path))
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "quantization.quantizer" in message and "Traceback" not in message
    for name in QUANTIZERS:
        assert f"'{name}'" in message

    path = write_recipe(quantization="quantization: {quantizer: nncf, precision: fp8}")
    result = _optcli("recipe", "validate", str(path))
    message = " ".join(result.stderr.split())
    assert result.returncode == 2 and "nncf quantizer does not support fp8 (it supports int8)" in message

    schema = json.loads(_optcli("recipe", "schema").stdout)
    prop = schema["$defs"]["QuantizationSettings"]["properties"]["quantizer"]
    assert prop["enum"] == list(QUANTIZERS)
    for quantizer in QUANTIZERS.values():
        assert f"{quantizer.name} (" in prop["description"] and quantizer.summary in prop["description"]


# -- passes: names in descriptions and docs, the precision each produces --------------------------


def test_schema_and_readme_name_every_registered_entry():
    from optcli.recipe.models import Recipe

    description = Recipe.model_json_schema()["properties"]["passes"]["description"]
    assert description.endswith(f"Names: {', '.join(PASSES)}.")
    readme = (REPO / "README.md").read_text()
    passes_row = next(line for line in readme.splitlines() if line.startswith("| `passes` |"))
    quantization_row = next(line for line in readme.splitlines() if line.startswith("| `quantization` |"))
    assert all(f"`{name}`" in passes_row for name in PASSES)
    assert all(name in quantization_row for name in QUANTIZERS)
    assert all(any(line.startswith(f"| `{name}` |") for line in readme.splitlines()) for name in ENGINES)


def test_only_the_fp16_pass_changes_precision():
    assert {n: p.produces_precision for n, p in PASSES.items() if p.produces_precision} == {"fp16": "fp16"}


# -- optional packages: declared once, listed by doctor --------------------------------------------


def _declared() -> dict[str, OptionalPackage]:
    from optcli.doctor import declared_packages

    return {package.name: package for package in declared_packages()}


def test_declared_packages_are_consistent():
    entries = [*ENGINES.values(), *QUANTIZERS.values(), *SOURCES.values()]
    declared = [p for entry in entries for p in entry.requires]
    assert declared, "the registries declare no optional package at all"
    by_name: dict[str, OptionalPackage] = {}
    for package in declared:
        assert isinstance(package, OptionalPackage)
        assert package.module and package.distributions and package.install.startswith(("pip ", "pip\t"))
        assert by_name.setdefault(package.name, package) == package, f"two declarations of {package.name}"
    assert set(by_name) <= set(_declared())
    # the entries whose optional packages this repo ships extras for
    assert {p.name for p in QUANTIZERS["modelopt"].requires} == {"nvidia-modelopt"}
    assert {p.name for p in SOURCES["images"].requires} == {"pillow"}
    assert "openvino" in {p.name for p in ENGINES["openvino"].requires}


@pytest.fixture(scope="module")
def doctor_json() -> list[dict]:
    result = _optcli("doctor", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_doctor_lists_every_declared_package(doctor_json):
    checks = {check["name"]: check for check in doctor_json}
    for name, package in _declared().items():
        assert name in checks, f"doctor does not list {name}"
        check = checks[name]
        assert check["needed_by"], name
        if not check["usable"]:
            assert check["fix"] == package.install
    for machine_fact in ("torch", "cuda gpu", "onnxruntime", "ort cuda provider", "ort tensorrt provider"):
        assert machine_fact in checks


def test_doctor_follows_the_registries(monkeypatch):
    """A new registry entry's package appears in doctor without touching doctor.py."""
    from optcli import doctor
    from optcli.backends import EngineKind
    from optcli.backends.onnxruntime import OnnxRuntimeConfig, OnnxRuntimeEngine

    fake = OptionalPackage("optcli-test-absent", "optcli_test_absent", ("optcli-test-absent",), "pip x")
    monkeypatch.setitem(
        ENGINES, "test_engine", EngineKind("test_engine", OnnxRuntimeConfig, OnnxRuntimeEngine, "t", (fake,))
    )
    real = doctor.check_package

    def check_package(package, needed_by=None):  # real check for the new package only: imports are slow
        if package is fake:
            return real(package, needed_by)
        return doctor.Check(package.name, True, "not checked here", None, list(needed_by or []))

    monkeypatch.setattr(doctor, "check_package", check_package)
    check = next(c for c in doctor.run_checks() if c.name == fake.name)
    assert (check.usable, check.fix, check.needed_by) == (False, "pip x", ["engine test_engine"])
    assert check.detail == "not installed (for engine test_engine)"


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(recipe):
    assert load_recipe(recipe).name


def test_engines_that_run_onnx_files_share_one_base():
    from optcli.backends.base import OnnxEngine, OnnxEngineConfig

    onnx_kinds = {n for n, kind in ENGINES.items() if issubclass(kind.config, OnnxEngineConfig)}
    assert onnx_kinds == {"onnxruntime", "onnxruntime_gpu", "openvino", "tensorrt"}
    for name in onnx_kinds:
        engine = ENGINES[name].engine
        assert issubclass(engine, OnnxEngine), name
        assert "_artifact" not in vars(engine), f"{name} resolves its artifact itself"
