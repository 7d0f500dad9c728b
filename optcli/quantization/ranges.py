"""Quantization ranges per tensor, derived from collected statistics by the recipe's method."""

from __future__ import annotations

import numpy as np

from optcli.quantization.statistics import ActivationStatistics, TensorHistogram

QUANTIZED_BINS = 128


def _folded(hist: TensorHistogram) -> tuple[np.ndarray, np.ndarray]:
    """|x| histogram: counts and upper bin edges over [0, bound]."""
    half = len(hist.counts) // 2
    counts = hist.counts[half:] + hist.counts[:half][::-1]
    edges = np.linspace(0.0, hist.bound, half + 1)[1:]
    return counts, edges


def percentile_threshold(hist: TensorHistogram, percentile: float) -> float:
    counts, edges = _folded(hist)
    total = counts.sum()
    if total == 0:
        return 0.0
    index = int(np.searchsorted(np.cumsum(counts) / total, percentile / 100.0))
    return float(edges[min(index, len(edges) - 1)])


def entropy_threshold(hist: TensorHistogram, quantized_bins: int = QUANTIZED_BINS) -> float:
    """Threshold minimizing KL(P || Q), P the clipped distribution and Q its quantized form.

    The TensorRT/MXNet algorithm exactly as onnxruntime's calibrate.py computes it (a symmetric
    window around zero on the signed histogram, ORT's smoothing and KL helpers), with the per-bin
    Python loops replaced by numpy reductions: ~0.1 s per tensor instead of ~1 s.
    """
    from onnxruntime.quantization.calibrate import entropy
    from onnxruntime.quantization.quant_utils import smooth_distribution

    counts = hist.counts
    bins, zero, half = len(counts), len(counts) // 2, quantized_bins // 2
    cumulative = np.concatenate([[0], np.cumsum(counts)])
    best_end, best_kl = bins, np.inf
    for i in range(half, zero + 1):
        start, end = zero - i, min(zero + i + 1, bins)
        sliced = counts[start:end]
        p = sliced.copy()
        p[0] += cumulative[start]  # outliers clip into the edge bins
        p[-1] += cumulative[bins] - cumulative[end]
        merged = sliced.size // quantized_bins
        head = merged * quantized_bins
        quantized = sliced[:head].reshape(quantized_bins, merged).sum(axis=1)
        quantized[-1] += sliced[head:].sum()
        nonzero = (p[:head] != 0).reshape(quantized_bins, merged).sum(axis=1)
        q = np.zeros(p.size, dtype=np.int64)  # integer, as in ORT (its division result is truncated)
        q[:head] = np.repeat(np.where(nonzero > 0, quantized // np.maximum(nonzero, 1), 0), merged)
        p_smooth, q_smooth = smooth_distribution(p), smooth_distribution(q)
        kl = np.inf if p_smooth is None or q_smooth is None else float(entropy(p_smooth, q_smooth))
        if kl < best_kl:
            best_end, best_kl = end, kl
    threshold = float(hist.edges[best_end])
    return min(threshold, max(abs(hist.minimum), abs(hist.maximum)))


def mse_threshold(hist: TensorHistogram, levels: float = 127.0) -> float:
    """Threshold t minimizing clipping error above t plus rounding noise (t / levels)^2 / 12 below it."""
    counts, edges = _folded(hist)
    counts = counts.astype(np.float64)
    centers = edges - (edges[1] - edges[0]) / 2 if len(edges) > 1 else edges
    # Suffix sums give every candidate's clipping error in one vectorized pass.
    n_above = np.cumsum(counts[::-1])[::-1]
    c_above = np.cumsum((counts * centers)[::-1])[::-1]
    c2_above = np.cumsum((counts * centers**2)[::-1])[::-1]
    shift = lambda a: np.append(a[1:], 0.0)  # noqa: E731 - "strictly above candidate k"
    t = edges
    clip = shift(c2_above) - 2 * t * shift(c_above) + t**2 * shift(n_above)
    rounding = (t / levels) ** 2 / 12.0 * (counts.sum() - shift(n_above))
    return float(edges[int(np.argmin(clip + rounding))])


def tensor_range(
    hist: TensorHistogram, method: str, *, percentile: float, symmetric: bool
) -> tuple[float, float]:
    if method == "minmax":
        low, high = hist.minimum, hist.maximum
    else:
        threshold = {
            "percentile": lambda: percentile_threshold(hist, percentile),
            "entropy": lambda: entropy_threshold(hist),
            "mse": lambda: mse_threshold(hist),
        }[method]()
        low, high = max(hist.minimum, -threshold), min(hist.maximum, threshold)
    if symmetric:
        amax = max(abs(low), abs(high))
        return -amax, amax
    return min(low, 0.0), max(high, 0.0)  # the range must contain zero for an exact zero point


def compute_ranges(
    stats: ActivationStatistics, method: str, *, percentile: float = 99.999, symmetric: bool = False
) -> dict[str, tuple[float, float]]:
    return {
        name: tensor_range(hist, method, percentile=percentile, symmetric=symmetric)
        for name, hist in stats.tensors.items()
        if hist.bound > 0
    }
