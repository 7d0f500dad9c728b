"""The one ONNX Runtime session builder (optcli/ort_session.py), on a real exported model and real ORT."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from optcli.backends.onnxruntime_gpu import CPU, node_placement
from optcli.ort_session import create_session, ort_level

REPO = Path(__file__).resolve().parent.parent


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}


def test_options_reach_the_session(exported_cnn):
    path = exported_cnn[0]
    session = create_session(path, threads=1, level="basic", spinning=False)
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.log_severity_level == 3
    assert session.get_providers() == [CPU]
    default = create_session(path).get_session_options()
    assert default.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert not default.enable_profiling


@pytest.mark.parametrize("level", ["disabled", "basic", "extended", "all"])
def test_every_level_computes_the_same(exported_cnn, level):
    path, _, _ = exported_cnn
    feeds = _feeds()
    reference = create_session(path, level="disabled").run(None, feeds)
    session = create_session(path, level=level)
    np.testing.assert_allclose(session.run(None, feeds)[0], reference[0], rtol=1e-4, atol=1e-5)
    assert session.get_session_options().graph_optimization_level == ort_level(level)


def test_optimized_model_is_written_and_equivalent(exported_cnn, tmp_path):
    path, _, _ = exported_cnn
    out = tmp_path / "optimized.onnx"
    create_session(path, level="basic", optimized_model=out)
    assert len(onnx.load(str(out)).graph.node) <= len(onnx.load(str(path)).graph.node)
    feeds = _feeds()
    expected = create_session(path).run(None, feeds)[0]
    np.testing.assert_allclose(create_session(out).run(None, feeds)[0], expected, rtol=1e-4, atol=1e-5)


def test_profiling_writes_a_profile_the_placement_reader_understands(exported_cnn, tmp_path):
    """A real ORT profile (not a fixture): every node ran on the CPU provider."""
    path, _, _ = exported_cnn
    session = create_session(path, profile_prefix=tmp_path / "prof")
    session.run(None, _feeds())
    profile = Path(session.end_profiling())
    assert profile.parent == tmp_path and profile.name.startswith("prof")
    placement = node_placement(json.loads(profile.read_text()))
    assert placement.nodes and set(placement.nodes) == {CPU} and placement.share(CPU) == 1.0


def test_sessions_are_set_up_in_one_place():
    """No other module builds its own SessionOptions/InferenceSession (the four copies this replaced)."""
    pattern = re.compile(r"\b(InferenceSession|SessionOptions)\(")
    sources = [*(REPO / "optcli").rglob("*.py"), *(REPO / "bench").rglob("*.py")]
    builders = sorted(str(p.relative_to(REPO)) for p in sources if pattern.search(p.read_text()))
    assert builders == ["optcli/ort_session.py"]
