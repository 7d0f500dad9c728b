"""Shared fixtures: tiny real models written as user files, and recipes that use them."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from optcli.recipe import parse_recipe

# Compiled AOTInductor packages are content-addressed and slow to build (20-80 s a model on 2
# cores): all tests share one folder of them, kept between sessions. Every other stage is per test.
AOTI_PACKAGES = (
    Path(os.environ.get("OPTCLI_TEST_CACHE", Path.home() / ".cache" / "optcli-test")) / "aoti-packages"
)


@pytest.fixture(autouse=True)
def stage_cache(tmp_path_factory, monkeypatch) -> Path:
    """Each test gets its own stage cache (subprocesses inherit it): no test sees another's results,
    except the shared AOTI packages."""
    root = tmp_path_factory.mktemp("stage-cache")
    AOTI_PACKAGES.mkdir(parents=True, exist_ok=True)
    (root / "aoti").symlink_to(AOTI_PACKAGES, target_is_directory=True)
    monkeypatch.setenv("OPTCLI_CACHE_DIR", str(root))
    return root


MODEL_FILE = '''
import torch
from torch import nn


class TwoLayer(nn.Module):
    """A tiny classifier: [batch, 16] -> [batch, 4]."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.fc1 = nn.Linear(16, hidden)
        self.fc2 = nn.Linear(hidden, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class TwoInputsDictOut(nn.Module):
    """Two inputs (one with a dynamic 'seq' dim), dict output."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, tokens, mask):
        h = self.proj(tokens) * mask.unsqueeze(-1)
        return {"pooled": h.mean(1), "hidden": h}


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


class OutlierMLP(nn.Module):
    """Built to break per-tensor INT8: one hidden unit of `mid` is ~1000x larger than the rest, so
    quantizing that tensor with one scale flattens the other units (the classes depend on them)."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(16, 64)
        self.mid = nn.Linear(64, 64)
        self.out = nn.Linear(64, 4)
        with torch.no_grad():
            self.mid.weight[0] *= 1000.0
            self.mid.bias[0] = 1000.0
            self.out.weight[:, 0] = 0.0  # the outlier unit carries no class signal

    def forward(self, x):
        return self.out(torch.relu(self.mid(torch.relu(self.inp(x)))))


def make_outlier_mlp():
    torch.manual_seed(0)
    return OutlierMLP().eval()


def make_two_layer(hidden: int = 32):
    torch.manual_seed(0)
    return TwoLayer(hidden).eval()


def make_two_inputs():
    torch.manual_seed(0)
    return TwoInputsDictOut().eval()


def make_cnn():
    torch.manual_seed(0)
    return SmallCNN().eval()


def not_a_module():
    return 42


def batches(n: int = 4, size: int = 8, seed: int = 0):
    import numpy as np
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield {"x": rng.standard_normal((size, 16)).astype("float32")}
'''


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A folder holding models.py, as a user's model repo would."""
    (tmp_path / "models.py").write_text(MODEL_FILE)
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("optcli_user_models")]:
        del sys.modules[name]


def tiny_recipe_text(**sections: str) -> str:
    """A minimal valid recipe for models.py:make_two_layer; keyword args replace whole sections."""
    base = {
        "name": "name: tiny",
        "model": textwrap.dedent("""\
            model:
              source: models.py:make_two_layer
              inputs:
                - {name: x, shape: [batch, 16]}
              dims:
                batch: {min: 1, opt: 4, max: 32}
            """),
        "validate": "validate: {samples: 32, batch_size: 16}",
        "benchmark": "benchmark: {batch_sizes: [1], warmup: 1, iterations: 3}",
    }
    base.update(sections)
    return "\n".join(text for text in base.values() if text) + "\n"


@pytest.fixture
def write_recipe(model_dir: Path):
    def write(text: str | None = None, name: str = "recipe.yaml", **sections: str) -> Path:
        path = model_dir / name
        path.write_text(text if text is not None else tiny_recipe_text(**sections))
        return path

    return write


@pytest.fixture
def tiny_recipe(write_recipe):
    def build(**sections: str):
        path = write_recipe(**sections)
        return parse_recipe(path.read_text(), source=path)

    return build


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `optcli ARGS` in-process; return (exit code, stdout, stderr with rich's line wrapping undone)."""
    monkeypatch.delenv("OPTCLI_DEBUG", raising=False)

    from optcli.cli import main

    def invoke(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["optcli", *map(str, args)])
        with pytest.raises(SystemExit) as info:
            main()
        out, err = capsys.readouterr()
        return info.value.code, out, " ".join(err.split())

    return invoke


@pytest.fixture(scope="session")
def exported_cnn(tmp_path_factory):
    """models.py:make_cnn exported once with the dynamo exporter: (onnx path, torch model, resolver)."""
    from helpers import resolver_for

    from optcli.export import export_onnx
    from optcli.loading import load_torch_model
    from optcli.recipe.models import ModelSection

    folder = tmp_path_factory.mktemp("cnn")
    (folder / "models.py").write_text(MODEL_FILE)
    section = ModelSection(source="models.py:make_cnn", inputs=[{"name": "x", "shape": ["batch", 3, 16, 16]}])
    model = load_torch_model(section, folder)
    resolver = resolver_for(("x", ["batch", 3, 16, 16]))
    path = export_onnx(
        model,
        resolver,
        folder / "cnn.onnx",
        exporter="dynamo",
        opset=18,
        output_names=None,
        external_data=None,
    ).path
    return path, model, resolver


@pytest.fixture
def fake_probe(monkeypatch):
    """Install a fake latency probe (no timing): each engine's ms from the test's table, so that
    which candidate is fastest is the test's choice, not this machine's. `install(table, default)`
    returns the list of label lists probed so far."""
    import optcli.stages.target as target_stage

    probed: list[list[str]] = []

    def install(table: dict[str, float], default: float) -> list[list[str]]:
        def probe(engines, feeds, batch):
            probed.append([e.label for e in engines])
            return {e.label: table.get(e.label, default) for e in engines}

        monkeypatch.setattr(target_stage, "probe_latency", probe)
        return probed

    return install
