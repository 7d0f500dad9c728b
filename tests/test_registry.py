"""Every module imports with core dependencies only; registries match their names; recipes parse."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import get_args

import pytest

import optcli
from optcli.backends import ENGINES
from optcli.calibration import SOURCES
from optcli.passes import PASSES
from optcli.quantization import QUANTIZERS
from optcli.recipe import load_recipe

REPO = Path(__file__).resolve().parent.parent
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(optcli.__path__, "optcli.") if m.name != "optcli.__main__"
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
    assert set(QUANTIZERS) == set(
        get_args(optcli.quantization.QuantizationSettings.model_fields["quantizer"].annotation)
    )


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_validate(recipe):
    assert load_recipe(recipe).name
