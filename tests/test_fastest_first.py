"""validate.prune_ratio: a target run validates its candidates fastest first and leaves out those
that can no longer be chosen; the baseline runs once; the cache keeps a pruning only while the
candidate that pruned holds."""

from __future__ import annotations

import numpy as np
import pytest

from optcli.console import SilentUI
from optcli.fastest_first import validate_fastest_first
from optcli.pipeline import run_recipe
from optcli.recipe import load_recipe
from optcli.validate import RecordingBaseline


def fake_validation(passing: set[str]):
    """A fake validation (no engines): passes the labels in `passing`, records each tier."""
    tiers: list[list[str]] = []

    def validate(labels: list[str]) -> set[str]:
        tiers.append(labels)
        return set(labels) & passing

    return validate, tiers


def test_the_fastest_tier_passing_prunes_everything_slower_than_its_ratio():
    probe = {"int8": 10.0, "mixed": 14.0, "fp32": 30.0, "ov-fp32": 31.0}
    validate, tiers = fake_validation({"int8", "mixed", "fp32"})
    pruned = validate_fastest_first(probe, 1.5, validate)
    assert tiers == [["int8", "mixed"]]  # 14 < 1.5 x 10: both could be the fastest that passes
    assert set(pruned) == {"fp32", "ov-fp32"}
    assert pruned["fp32"].by == "int8" and pruned["fp32"].ratio == pytest.approx(3.0)
    assert "3.00x that of int8" in pruned["fp32"].reason()


def test_a_failing_fastest_candidate_moves_on_and_the_slowest_passing_one_in_a_tier_counts():
    probe = {"int8": 10.0, "mixed": 14.0, "ort-int8": 19.0, "fp32": 25.0, "slow": 40.0}
    validate, tiers = fake_validation({"mixed", "fp32"})
    pruned = validate_fastest_first(probe, 1.5, validate)
    # int8 fails and mixed passes: under 1.5 x 14 = 21 only ort-int8 is left to validate.
    assert tiers == [["int8", "mixed"], ["ort-int8"]]
    assert set(pruned) == {"fp32", "slow"} and pruned["fp32"].by == "mixed"


def test_nothing_passing_validates_everything_and_prunes_nothing():
    probe = {"a": 1.0, "b": 5.0, "c": 100.0}
    validate, tiers = fake_validation(set())
    assert validate_fastest_first(probe, 1.5, validate) == {}
    assert [label for tier in tiers for label in tier] == ["a", "b", "c"]


def test_when_tiers_stop_being_cheap_the_rest_is_one_tier():
    probe = {"a": 1.0, "b": 5.0, "c": 30.0, "d": 100.0}
    validate, tiers = fake_validation({"c"})
    pruned = validate_fastest_first(probe, 1.5, validate, tiers_are_cheap=lambda: not tiers)
    assert tiers == [["a"], ["b", "c", "d"]] and pruned == {}


class CountingEngine:
    """A fake engine (no runtime): doubles its input and counts its calls."""

    label, precision = "baseline", "fp32"

    def __init__(self) -> None:
        self.calls = 0

    def run(self, batch):
        self.calls += 1
        return [batch["x"] * 2]


def test_the_recording_baseline_replays_its_batches_and_stops_recording_past_its_cap():
    engine = CountingEngine()
    batches = [{"x": np.full((4, 8), float(i), dtype=np.float32)} for i in range(3)]
    kept = RecordingBaseline(engine, cap_bytes=10_000)
    first = [kept.run(b) for b in batches]
    assert kept.complete and kept.batches == batches and engine.calls == 3
    assert [kept.run(b)[0] is out[0] for b, out in zip(kept.batches, first)] == [True] * 3
    assert engine.calls == 3  # replayed
    # The same values in a new batch object are not replayed: only the batches it recorded are.
    kept.run({"x": batches[0]["x"].copy()})
    assert engine.calls == 4
    small = RecordingBaseline(CountingEngine(), cap_bytes=300)  # one batch in and out is 256 bytes
    for b in batches:
        small.run(b)
    assert not small.complete and len(small.batches) == 1


OUTLIER = """model:
  source: models.py:make_outlier_mlp
  inputs:
    - {name: x, shape: [batch, 16]}"""


def run(path, tmp_path, name, *overrides):
    recipe = load_recipe(path, ["target=cpu", *overrides])
    return run_recipe(recipe, tmp_path / name, SilentUI()).to_dict()


def test_real_run_prunes_the_slower_candidates_and_the_cache_keeps_it_while_it_holds(
    write_recipe, tmp_path, fake_probe
):
    """Real ORT (and OpenVINO where installed) engines on the outlier MLP, whose per-tensor INT8
    fails the worst-sample gate: INT8 is validated first and fails, FP32 passes, and the
    candidates probed at 2x FP32 are neither validated nor benchmarked (a fake probe sets the
    order: INT8 fastest, FP32 next, every other candidate twice FP32)."""
    pytest.importorskip("openvino")  # its candidates are the slower ones here
    probed = fake_probe({"ort-int8": 1.0, "ort-fp32": 1.2}, 2.4)
    path = write_recipe(
        model=OUTLIER,
        quantization="quantization: {precision: int8, calibration: {samples: 64}, mixed: {enabled: false}}",
        validate="validate: {samples: 64, gates: {cosine_min: '>= 0.99'}}",
        build="build: []",
    )
    report = run(path, tmp_path, "first")
    assert report["verdict"] == "pass" and report["selection"]["chosen"] == "ort-fp32"
    rows = {row["engine"]: row for row in report["selection"]["ranking"]}
    slower = {label for label in rows if label not in ("ort-int8", "ort-fp32")}
    assert slower
    validation = {e["engine"]: e for e in report["validation"]["engines"]}
    assert not rows["ort-int8"]["passed"] and "cosine_min" in rows["ort-int8"]["reason"]
    for label in slower:
        assert validation[label]["pruned"] == {
            "by": "ort-fp32",
            "ratio": 2.0,
            "probe_ms": 2.4,
            "by_probe_ms": 1.2,
        }
        assert validation[label]["metrics"] == {}
        assert rows[label]["passed"] is None and rows[label]["reason"].startswith("not validated")
        assert not [g for g in report["gates"] if g["engine"] == label]  # no gate, so none can pass
    timed = {r["engine"] for r in report["benchmark"]["results"]}
    assert timed == {report["benchmark"]["baseline"], "ort-fp32"}  # the baseline and the one that passed
    assert report["validation"]["probe_ms"]["ort-fp32"] == 1.2 and len(probed) == 1

    again = run(path, tmp_path, "again")  # the cache holds: no probe, the same pruning
    assert len(probed) == 1 and again["selection"]["chosen"] == "ort-fp32"
    assert {e["engine"] for e in again["validation"]["engines"] if e.get("pruned")} == slower

    # A gate FP32 fails too: the pruning no longer holds, so every candidate is validated again.
    strict = run(path, tmp_path, "strict", "validate.gates={cosine_min: '>= 1.1'}")
    assert len(probed) == 2 and strict["selection"]["chosen"] is None
    assert not [e for e in strict["validation"]["engines"] if e.get("pruned")]
    assert {g["engine"] for g in strict["gates"] if g["name"] == "validate.cosine_min"} == set(rows)

    # A wider ratio than the one that pruned: validated anew (2.0 < 3), nothing pruned at 3.
    wide = run(path, tmp_path, "wide", "validate.prune_ratio=3")
    assert len(probed) == 3 and not [e for e in wide["validation"]["engines"] if e.get("pruned")]
