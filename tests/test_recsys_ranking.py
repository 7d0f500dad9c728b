"""Streamed ranking metrics (optcli/ranking.py) against scikit-learn on random data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from optcli.ranking import RankingAccumulator, RankingSet
from optcli.stages.validate import validation_gates
from optcli.validate import EngineValidation


def _stream(acc: RankingAccumulator, scores: np.ndarray, labels: np.ndarray, seed: int = 0) -> None:
    """Feed in batches of random sizes: the result must not depend on how the data is cut."""
    rng = np.random.default_rng(seed)
    start = 0
    while start < len(scores):
        size = int(rng.integers(1, 700))
        acc.update(scores[start : start + size], labels[start : start + size])
        start += size


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probabilities_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(-1.0, 1.5, 20_000)
    p = 1 / (1 + np.exp(-logits))
    labels = (rng.random(len(p)) < p).astype(np.int64)
    acc = RankingAccumulator()
    _stream(acc, p.astype(np.float32)[:, None], labels, seed)  # [N, 1] as a CTR model outputs it
    result = acc.result(logits=False)
    p32 = p.astype(np.float32).astype(np.float64)
    exact = roc_auc_score(labels, p32)
    assert 0 < result["auc_error_bound"] < 2e-4
    assert abs(result["auc"] - exact) <= result["auc_error_bound"] + 1e-12
    assert result["logloss"] == pytest.approx(log_loss(labels, p32), rel=1e-9)
    assert result["calibration"] == pytest.approx(p32.mean() / labels.mean(), rel=1e-9)
    assert acc.in_unit_interval  # every score was in [0, 1]


def test_logits_match_sklearn():
    rng = np.random.default_rng(5)
    logits = rng.normal(0.5, 2.0, 10_000)
    labels = (rng.random(len(logits)) < 1 / (1 + np.exp(-logits))).astype(np.int64)
    acc = RankingAccumulator()
    _stream(acc, logits, labels)
    assert not acc.in_unit_interval
    result = acc.result(logits=True)
    p = 1 / (1 + np.exp(-logits))
    assert abs(result["auc"] - roc_auc_score(labels, logits)) <= result["auc_error_bound"] + 1e-12
    assert result["logloss"] == pytest.approx(log_loss(labels, p), rel=1e-9)
    assert result["calibration"] == pytest.approx(p.mean() / labels.mean(), rel=1e-9)


def test_exact_ties_cost_no_error():
    """Scores on a coarse grid (a quantized output): bucketing adds nothing, the bound says so."""
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(5000), 2)
    labels = (rng.random(5000) < scores).astype(np.int64)
    acc = RankingAccumulator()
    _stream(acc, scores, labels)
    result = acc.result(logits=False)
    assert result["auc_error_bound"] == 0
    assert result["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_set_drops_and_interpretation():
    """The baseline decides probabilities vs logits; drops are baseline minus candidate."""
    rng = np.random.default_rng(7)
    logits = rng.normal(-1, 1.5, (8, 512))
    labels = (rng.random(logits.shape) < 1 / (1 + np.exp(-logits))).astype(np.int64)
    noisy = logits + rng.normal(0, 0.8, logits.shape)
    ranking = RankingSet(["good", "noisy"], 0)
    for batch, y in enumerate(labels):
        ranking.add_baseline([logits[batch][:, None]], y)
        ranking.add("good", [logits[batch][:, None]], y)
        ranking.add("noisy", [noisy[batch][:, None]], y)
    assert ranking.logits
    good, worse = ranking.metrics("good"), ranking.metrics("noisy")
    assert good["auc_drop"] == 0 and good["logloss_increase"] == 0
    exact_drop = roc_auc_score(labels.ravel(), logits.ravel()) - roc_auc_score(labels.ravel(), noisy.ravel())
    assert worse["auc_drop"] == pytest.approx(exact_drop, abs=worse["auc_drop_error_bound"] + 1e-12)
    assert worse["auc_drop"] > 0.02 and worse["logloss_increase"] > 0
    assert set(ranking.baseline_metrics()) == {"auc", "logloss", "calibration"}


def test_not_ranking_data():
    """Class ids (not 0/1) or a multi-column output: no ranking metrics rather than wrong ones."""
    scores = np.random.default_rng(0).random((64, 1))
    ranking = RankingSet(["e"], 0)
    ranking.add_baseline([scores], np.zeros(64, np.int64))
    ranking.add("e", [scores], np.zeros(64, np.int64))
    ranking.add_baseline([scores], np.full(64, 3))
    assert ranking.metrics("e") == {} and ranking.baseline_metrics() == {}
    classes = RankingSet(["e"], 0)
    classes.add_baseline([np.ones((64, 10))], np.zeros(64, np.int64))
    classes.add("e", [np.ones((64, 10))], np.zeros(64, np.int64))
    assert classes.metrics("e") == {}


def test_non_finite_scores_never_pass():
    acc = RankingAccumulator()
    acc.update(np.array([0.2, np.nan, 0.7]), np.array([0, 1, 1]))
    result = acc.result(logits=False)
    assert np.isnan(result["auc"]) and result["logloss"] == np.inf


def test_auc_drop_gate_fails_loudly():
    """A candidate that ranks worse than the baseline by more than the gate allows fails it, with
    the drop as the value; metrics missing (no 0/1 labels) fail too, saying why."""
    rng = np.random.default_rng(11)
    logits = rng.normal(-1, 1.5, 4096)
    labels = (rng.random(4096) < 1 / (1 + np.exp(-logits))).astype(np.int64)
    ranking = RankingSet(["int4"], 0)
    ranking.add_baseline([logits[:, None]], labels)
    ranking.add("int4", [(logits + rng.normal(0, 1.0, 4096))[:, None]], labels)
    results = [
        EngineValidation("int4", "int8", classification=ranking.metrics("int4")),
        EngineValidation("no-labels", "int8"),
    ]
    gates = {(g.engine, g.name): g for g in validation_gates({"auc_drop": "<= 0.001"}, {}, results)}
    failed = gates[("int4", "validate.auc_drop")]
    assert not failed.passed and failed.status == "fail" and failed.value > 0.02
    missing = gates[("no-labels", "validate.auc_drop")]
    assert not missing.passed and "not available" in missing.detail
