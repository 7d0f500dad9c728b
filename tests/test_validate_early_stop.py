"""validate.stop_early: an engine stops running once a gate more samples cannot undo has failed;
the cache reuses such partial metrics only while that verdict still holds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optcli.console import SilentUI
from optcli.gates import settled_failure, settling_gates
from optcli.pipeline import run_recipe
from optcli.recipe import load_recipe
from optcli.validate import validate_engines

BATCH, BATCHES = 4, 5


class FakeEngine:
    """A fake engine (no runtime): returns its input times a sign, flipped from sample `breaks_at`
    on, or NaN there with `nan`; counts its calls."""

    def __init__(self, label: str, breaks_at: int | None = None, nan: bool = False) -> None:
        self.label, self.precision, self.breaks_at, self.nan, self.calls = label, "int8", breaks_at, nan, 0

    def run(self, batch: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.calls += 1
        x, first = batch["x"], int(batch["index"][0])
        out = x.copy()
        for i in range(len(x)):
            if self.breaks_at is not None and first + i >= self.breaks_at:
                out[i] = np.nan if self.nan else -x[i]
        return [out]


def batches():
    rng = np.random.default_rng(0)
    for b in range(BATCHES):
        yield {"x": rng.normal(size=(BATCH, 8)), "index": np.arange(b * BATCH, (b + 1) * BATCH)}


def run(candidates, gates):
    return validate_engines(
        FakeEngine("baseline"),
        candidates,
        batches(),
        output_names=["y"],
        labels_key="labels",
        class_output=None,
        stop_gates=None if gates is None else [settling_gates(gates)] * len(candidates),
    )


def test_a_settled_failure_stops_that_engine_only():
    broken, good = FakeEngine("broken", breaks_at=5), FakeEngine("good")
    results, baseline = run([broken, good], {"cosine_min": ">= 0.99", "cosine": ">= 0.5"})
    by = {r.engine: r for r in results}
    assert baseline["samples"] == BATCH * BATCHES and good.calls == BATCHES
    assert by["good"].stopped_early is None
    # Sample 5 is in the second batch: the engine ran two batches, then stopped.
    assert broken.calls == 2
    assert by["broken"].stopped_early == {"gate": "validate.cosine_min", "after_samples": 2 * BATCH}
    assert by["broken"].summary["cosine_min"] == pytest.approx(-1.0)
    assert by["broken"].to_dict()["stopped_early"]["after_samples"] == 8


def test_global_metrics_never_stop_and_off_means_every_sample():
    """A mean cosine can recover with more samples: not a reason to stop; None: stopping off."""
    broken = FakeEngine("broken", breaks_at=0)
    results, _ = run([broken], {"cosine": ">= 0.99", "rel_l2": "<= 0.01"})
    assert broken.calls == BATCHES and results[0].stopped_early is None
    off = FakeEngine("broken", breaks_at=0)
    results, _ = run([off], None)
    assert off.calls == BATCHES and results[0].stopped_early is None and results[0].summary["cosine"] < 0


def test_nan_outputs_stop_even_without_gates():
    nan = FakeEngine("nan", breaks_at=6, nan=True)
    results, _ = run([nan], {})
    assert nan.calls == 2 and results[0].stopped_early["gate"] == "validate.finite"
    assert math.isnan(results[0].summary["cosine"])


def test_which_gates_settle():
    gates = {
        "cosine_min": ">= 0.99",
        "snr_db_min": "> 20",
        "max_abs": "<= 0.1",
        "cosine": ">= 0.99",  # a mean: can recover
        "top1_agreement": ">= 0.9",
    }
    assert settling_gates(gates) == {"cosine_min": ">= 0.99", "snr_db_min": "> 20", "max_abs": "<= 0.1"}
    # The other direction is not settled by a running minimum / maximum.
    assert settling_gates({"cosine_min": "<= 0.5", "max_abs": ">= 1"}) == {}
    assert settled_failure({"values": 4, "max_abs": 0.2}, {"max_abs": "<= 0.1"}) == "validate.max_abs"
    assert settled_failure({"values": 4, "max_abs": 0.05}, {"max_abs": "<= 0.1"}) is None
    assert settled_failure({"values": 0, "cosine_min": math.nan}, {"cosine_min": ">= 0.9"}) is None


OUTLIER = """model:
  source: models.py:make_outlier_mlp
  inputs:
    - {name: x, shape: [batch, 16]}"""
BUILD = """build:
  - {name: ort-fp32, engine: onnxruntime, artifact: exported}
  - {name: ort-int8, engine: onnxruntime, artifact: quantized}"""


def test_real_run_stops_int8_and_the_cache_respects_thresholds(write_recipe, tmp_path):
    """Real ORT INT8 of the outlier model fails cosine_min on the first batch: it stops there; a
    stricter threshold reuses those partial metrics, a relaxed one validates every sample anew."""
    path = write_recipe(
        model=OUTLIER,
        quantization="quantization: {precision: int8, calibration: {samples: 64}}",
        validate="validate: {samples: 128, batch_size: 16, gates: {cosine_min: '>= 0.99'}}",
        build=BUILD,
    )

    def validated(threshold: str, *extra: str):
        recipe = load_recipe(path, [f"validate.gates.cosine_min={threshold}", *extra])
        report = run_recipe(recipe, tmp_path / "run", SilentUI()).to_dict()
        stage = next(s for s in report["stages"] if s["name"] == "validate")
        rows = {row["engine"]: row for row in report["validation"]["engines"]}
        return report, stage["details"], rows

    report, stage, rows = validated(">= 0.99")
    stopped = rows["ort-int8"]["stopped_early"]
    assert stopped["gate"] == "validate.cosine_min" and stopped["after_samples"] < 128
    assert "stopped_early" not in rows["ort-fp32"] and report["validation"]["samples"] == 128
    gate = next(g for g in report["gates"] if (g["engine"], g["name"]) == ("ort-int8", "validate.cosine_min"))
    assert not gate["passed"] and f"first {stopped['after_samples']} held-out samples" in gate["detail"]
    assert report["verdict"] == "fail" and not stage["cached"]

    _, stage, rows = validated(">= 0.995")  # stricter: the partial metrics still fail it
    assert stage["cached"] and rows["ort-int8"]["stopped_early"] == stopped

    report, stage, rows = validated(">= -1")  # relaxed: the partial metrics cannot decide it
    assert not stage["cached"] and "stopped_early" not in rows["ort-int8"]
    assert report["verdict"] == "pass"

    _, stage, rows = validated(">= 0.99", "validate.stop_early=false")
    assert stage["cached"] and "stopped_early" not in rows["ort-int8"]  # the full metrics serve it
