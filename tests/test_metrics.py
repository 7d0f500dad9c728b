"""Fidelity metrics and gate expressions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from optcli.gates import Threshold, evaluate
from optcli.metrics import ClassAccumulator, OutputAccumulator


def test_known_values():
    acc = OutputAccumulator()
    ref = np.array([3.0, 4.0])
    acc.update(ref, ref * 1.1)
    result = acc.result()
    assert result["cosine"] == pytest.approx(1.0)
    assert result["rel_l2"] == pytest.approx(0.1)
    assert result["snr_db"] == pytest.approx(20.0)
    assert result["max_abs"] == pytest.approx(0.4)


def test_non_finite_candidate_is_counted_not_hidden():
    acc = OutputAccumulator()
    acc.update(np.ones(4), np.array([1.0, np.nan, 1.0, np.inf]))
    result = acc.result()
    assert result["non_finite"] == 2 and result["values"] == 4
    assert math.isnan(result["cosine"]) and result["max_abs"] == math.inf  # no threshold can hold


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, (6, 5), elements=st.floats(-100, 100)),
    arrays(np.float64, (6, 5), elements=st.floats(-1, 1)),
)
def test_streaming_equals_whole(ref, noise):
    whole, parts = OutputAccumulator(), OutputAccumulator()
    whole.update(ref, ref + noise)
    for i in range(0, 6, 2):
        parts.update(ref[i : i + 2], ref[i : i + 2] + noise[i : i + 2])
    for key, value in whole.result().items():
        other = parts.result()[key]
        assert (math.isinf(value) and math.isinf(other)) or other == pytest.approx(value, rel=1e-9, abs=1e-9)


def test_class_metrics_with_labels():
    acc = ClassAccumulator()
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    cand = np.array([[0.8, 0.2], [0.6, 0.4], [0.7, 0.3]])
    acc.update(ref, cand, np.array([0, 1, 1]))
    result = acc.result()
    assert result["top1_agreement"] == pytest.approx(2 / 3)
    assert result["baseline_accuracy"] == pytest.approx(2 / 3)
    assert result["accuracy"] == pytest.approx(1 / 3)
    assert result["accuracy_drop"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("expr", "value", "passed"),
    [(">= 0.99", 0.995, True), ("<= 0.01", 0.02, False), ("> 2", 2.0, False), ("< 1e-3", 1e-4, True)],
)
def test_gates(expr, value, passed):
    result = evaluate("validate.cosine", "ort", value, expr)
    assert result.passed is passed


def test_gate_rejects_nan_and_bad_syntax():
    assert not Threshold.parse(">= 0").holds(float("nan"))
    assert not Threshold.parse(">= 0").holds(None)
    with pytest.raises(ValueError, match="is not '<op> <number>'"):
        Threshold.parse("at least 3")
