"""Statistics of raw timings: percentiles, spread, and rounds-paired bootstrap intervals.

Everything here is a function of the timings and a fixed seed, so a report's numbers can be
recomputed from `<run>/timings.json`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 20_240_917
_CHUNK_VALUES = 2_000_000  # resampled values held at once (memory bound for long benchmarks)
# Runs of one round the bootstrap resamples from: a longer round is thinned to this many of its
# quantiles. Fast engines under benchmark.min_time_s time tens of thousands of runs a round;
# resampling all of them made the example recipe's benchmark stage take 112 s for ~20 s of timing
# (now 0.5 s per cell at 20 rounds of 128). The point values use every run.
BOOTSTRAP_RUNS_PER_ROUND = 128

Interval = tuple[float, float]


def seed_for(engine: str, batch_size: int) -> int:
    """One seed per engine and batch size: a cell's interval does not depend on the other cells."""
    return SEED ^ zlib.crc32(f"{engine}@{batch_size}".encode())


@dataclass
class Summary:
    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    cv: float  # std / mean over all timed runs
    p90_over_p50: float
    round_medians: list[float]


def _rounds(rounds: list[list[float]] | list[np.ndarray]) -> list[np.ndarray]:
    arrays = [np.asarray(r, dtype=np.float64) for r in rounds]
    arrays = [a for a in arrays if a.size]
    if not arrays:
        raise ValueError("no timed runs")
    return arrays


def summarize(rounds: list[list[float]] | list[np.ndarray]) -> Summary:
    arrays = _rounds(rounds)
    ms = np.concatenate(arrays)
    p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
    mean, std = float(ms.mean()), float(ms.std())
    return Summary(
        p50=p50,
        p90=p90,
        p99=p99,
        mean=mean,
        std=std,
        cv=std / mean if mean > 0 else float("inf"),
        p90_over_p50=p90 / p50 if p50 > 0 else float("inf"),
        round_medians=[float(np.median(a)) for a in arrays],
    )


@dataclass
class Intervals:
    """95% bootstrap intervals of one engine's statistics at one batch size."""

    p50: Interval
    p99: Interval
    mean: Interval
    speedup: Interval | None = None  # median over rounds of the paired round-median ratios


def bootstrap(
    rounds: list[list[float]] | list[np.ndarray],
    baseline_rounds: list[list[float]] | list[np.ndarray] | None,
    seed: int,
    resamples: int = RESAMPLES,
) -> Intervals:
    """Two-level bootstrap: resample the rounds with replacement, then the runs within each picked
    round. Runs within a round share that moment's background load, so they are not independent;
    resampling rounds first makes the interval reflect the round-to-round drift, not only the
    scatter within a round. For the speedup (`paired_speedup`) the same round picks are applied to
    the engine and to the baseline's round of the same index: the two were timed in the same round
    (interleaved), so a round slowed by load slows both and cancels in the ratio. An engine's rounds
    are always the first rounds of the baseline's (a re-measurement times the baseline with it),
    hence the prefix."""
    arrays = [_thinned(a) for a in _rounds(rounds)]
    base = None
    if baseline_rounds is not None:
        base = [_thinned(a) for a in _rounds(baseline_rounds)[: len(arrays)]]
    if base is not None and len(base) < len(arrays):
        raise ValueError("the baseline has fewer rounds than the engine it is paired with")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(arrays), size=(resamples, len(arrays)))
    total = sum(a.size for a in arrays) + (sum(a.size for a in base) if base is not None else 0)
    chunk = max(1, min(resamples, _CHUNK_VALUES // max(1, total)))
    p50, p99, mean, speedup = [], [], [], []
    for start in range(0, resamples, chunk):
        part = picks[start : start + chunk]
        values, lengths = _resample(arrays, part, rng)
        q50, q99 = _segment_quantiles(values, lengths, (0.5, 0.99))
        p50.append(q50)
        p99.append(q99)
        mean.append(np.add.reduceat(values, _starts(lengths)) / lengths)
        if base is not None:
            base_values, _ = _resample(base, part, rng)
            engine_medians = _round_medians(values, arrays, part)
            base_medians = _round_medians(base_values, base, part)
            speedup.append(np.median(base_medians / engine_medians, axis=1))
    return Intervals(
        p50=interval(np.concatenate(p50)),
        p99=interval(np.concatenate(p99)),
        mean=interval(np.concatenate(mean)),
        speedup=interval(np.concatenate(speedup)) if base is not None else None,
    )


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def paired_speedup(
    baseline_rounds: list[list[float]] | list[np.ndarray], rounds: list[list[float]] | list[np.ndarray]
) -> float:
    """The speedup: the median over rounds of (baseline's round median / engine's round median),
    each round paired with the baseline's round of the same index.

    Not the ratio of pooled p50s: on a shared machine the load comes in states lasting seconds
    that slow the engines by different factors, so pooled p50s move with the share of slow
    states each engine happened to get. Each round's ratio compares two slices timed back to back;
    the median over rounds drops the rounds a burst split. Measured with bench/noise.py (example
    recipe, 1 thread, a busy loop on the other core, 5 runs of 40 rounds): spread around the
    median +-9.6% / +-9.3% (batch 1 / 64) for the pooled-p50 ratio, +-4.6% / +-1.8% for this."""
    engine = _rounds(rounds)
    base = _rounds(baseline_rounds)[: len(engine)]
    ratios = [np.median(b) / np.median(e) for b, e in zip(base, engine)]
    return float(np.median(ratios))


def _thinned(runs: np.ndarray, limit: int = BOOTSTRAP_RUNS_PER_ROUND) -> np.ndarray:
    """At most `limit` runs with the round's distribution: its quantiles at evenly spaced levels."""
    if runs.size <= limit:
        return runs
    return np.quantile(runs, (np.arange(limit) + 0.5) / limit)


def _round_medians(values: np.ndarray, arrays: list[np.ndarray], picks: np.ndarray) -> np.ndarray:
    """Per row of `picks`, the median of each picked round's resampled runs (rows x rounds)."""
    sizes = np.array([a.size for a in arrays])[picks].ravel()
    (medians,) = _segment_quantiles(values, sizes, (0.5,))
    return medians.reshape(picks.shape)


def _starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(lengths)[:-1]))


def _resample(arrays: list[np.ndarray], picks: np.ndarray, rng: np.random.Generator):
    """For each row of `picks` (round indices), every picked round's runs drawn with replacement:
    the values of all rows end to end, and each row's length."""
    sizes = np.array([a.size for a in arrays])
    flat = np.concatenate(arrays)
    counts = sizes[picks].ravel()
    first = np.repeat(_starts(sizes)[picks].ravel(), counts)
    width = np.repeat(counts, counts)
    index = first + (rng.random(first.size) * width).astype(np.int64)
    return flat[index], sizes[picks].sum(axis=1)


def _segment_quantiles(values: np.ndarray, lengths: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Quantiles of each consecutive segment (numpy's default linear interpolation), vectorized."""
    positions = [q * (lengths - 1) for q in qs]
    lows = [np.floor(p).astype(np.int64) for p in positions]
    highs = [np.minimum(low + 1, lengths - 1) for low in lows]
    if np.all(lengths == lengths[0]):  # equal rounds: a partial sort of each row is enough
        n = int(lengths[0])
        kth = sorted({int(k[0]) for k in lows + highs})
        rows = np.partition(values.reshape(lengths.size, n), kth, axis=1)
        at = [(rows[:, low[0]], rows[:, high[0]]) for low, high in zip(lows, highs)]
    else:
        segment = np.repeat(np.arange(lengths.size), lengths)
        ordered = values[np.lexsort((values, segment))]
        starts = _starts(lengths)
        at = [(ordered[starts + low], ordered[starts + high]) for low, high in zip(lows, highs)]
    return [a * (1 - (p - low)) + b * (p - low) for (a, b), p, low in zip(at, positions, lows)]
