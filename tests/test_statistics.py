"""Calibration statistics: bounded histograms, range methods from one pass, and the statistics cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optcli.quantization import QuantizationSettings
from optcli.quantization.calibrator import CalibrationCache
from optcli.quantization.ort_static import quantize
from optcli.quantization.ranges import entropy_threshold, tensor_range
from optcli.quantization.statistics import NUM_BINS, ActivationStatistics, TensorHistogram


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0.01, 1000), min_size=1, max_size=6))
def test_histogram_grows_without_losing_samples(scales):
    hist = TensorHistogram()
    rng = np.random.default_rng(0)
    data = [rng.standard_normal(500).astype(np.float32) * s for s in scales]
    for chunk in data:
        hist.update(chunk)
    everything = np.concatenate(data)
    assert hist.counts.sum() == everything.size and len(hist.counts) == NUM_BINS  # memory stays fixed
    assert hist.minimum == everything.min() and hist.maximum == everything.max()
    assert hist.bound >= np.abs(everything).max()


def test_methods_on_known_distributions():
    hist = TensorHistogram()
    values = np.random.default_rng(1).standard_normal(200_000).astype(np.float32)
    hist.update(values)
    low, high = tensor_range(hist, "minmax", percentile=99.9, symmetric=False)
    assert (low, high) == (values.min(), values.max())
    _, p999 = tensor_range(hist, "percentile", percentile=99.9, symmetric=True)
    assert p999 == pytest.approx(np.percentile(np.abs(values), 99.9), rel=0.02)
    _, threshold = tensor_range(hist, "mse", percentile=99.9, symmetric=True)
    assert 2.5 < threshold < high  # clips the Gaussian tail, keeps the bulk


@pytest.mark.parametrize("kind", ["normal", "relu", "laplace"])
def test_entropy_matches_onnxruntime(kind, capsys):
    """Our vectorized KL search gives ORT's threshold on the same histogram."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    rng = np.random.default_rng(3)
    values = {
        "normal": rng.standard_normal(50_000),
        "relu": np.maximum(rng.standard_normal(50_000), 0),
        "laplace": rng.laplace(size=50_000),
    }[kind].astype(np.float32)
    hist = TensorHistogram()
    hist.update(values)
    collector = HistogramCollector("entropy", False, NUM_BINS, 128, 99.9, "same")
    collector.collect({"t": [values]})
    _, ort_high = collector.compute_collection_result()["t"][:2]
    assert entropy_threshold(hist) == pytest.approx(float(ort_high), rel=1e-5)


def test_asymmetric_range_contains_zero():
    hist = TensorHistogram()
    hist.update(np.linspace(2.0, 5.0, 100, dtype=np.float32))
    low, high = tensor_range(hist, "minmax", percentile=99.9, symmetric=False)
    assert low == 0.0 and high == 5.0


def test_statistics_round_trip(tmp_path):
    hist = TensorHistogram()
    hist.update(np.arange(-5, 6, dtype=np.float32))
    stats = ActivationStatistics({"t": hist}, samples=11, batches=1, data_digest="abc")
    stats.save(tmp_path / "s.npz")
    loaded = ActivationStatistics.load(tmp_path / "s.npz")
    assert loaded.samples == 11 and loaded.tensors["t"].bound == hist.bound
    np.testing.assert_array_equal(loaded.tensors["t"].counts, hist.counts)


@pytest.fixture
def cnn_onnx(exported_cnn):
    return exported_cnn[0]


def _counting_batches(counter: list[int], n: int = 6):
    rng = np.random.default_rng(0)
    for _ in range(n):
        counter[0] += 1
        yield {"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)}


def test_switching_method_reuses_statistics(cnn_onnx, tmp_path):
    cache = CalibrationCache(tmp_path / "cache", data_key="same-data")
    read = [0]
    first = quantize(
        cnn_onnx,
        tmp_path / "a.onnx",
        QuantizationSettings(calibration={"method": "minmax"}),
        _counting_batches(read),
        ["x"],
        cache=cache,
    )
    assert read[0] == 6 and not first["statistics_reused"]
    read = [0]
    second = quantize(
        cnn_onnx,
        tmp_path / "b.onnx",
        QuantizationSettings(calibration={"method": "percentile", "percentile": 99.0}),
        _counting_batches(read),
        ["x"],
        cache=cache,
    )
    assert second["statistics_reused"] and read[0] == 1  # one batch for ORT's overridden pass, no data pass
    assert (tmp_path / "a.onnx").read_bytes() != (tmp_path / "b.onnx").read_bytes()
    other = quantize(
        cnn_onnx,
        tmp_path / "c.onnx",
        QuantizationSettings(),
        _counting_batches([0]),
        ["x"],
        cache=CalibrationCache(tmp_path / "cache", data_key="other-data"),
    )
    assert not other["statistics_reused"]
