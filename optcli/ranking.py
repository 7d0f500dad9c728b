"""Ranking metrics for click-through-rate models, streamed over validation batches in flat memory:
AUC, log loss and calibration (mean predicted CTR / observed CTR), and their changes vs the baseline.

AUC is computed from histograms of the scores in logit space (BUCKETS buckets over
[-LOGIT_RANGE, LOGIT_RANGE], the ends open), with pairs in one bucket counted as ties (1/2). It
differs from the exact AUC only on positive/negative pairs of unequal scores that share a bucket,
each by at most 1/2, so |AUC - exact AUC| <= 1/2 * sum_b pos_b * neg_b / (P * N) over the buckets
whose scores are not all equal (equal scores are ties for the exact AUC too): that bound is computed
from the same histograms and reported as `auc_error_bound` (about 1e-4 or less for 10^4 samples of
a spread-out CTR; it grows when many scores sit beyond the range). Log loss and calibration are
exact sums.

Scores are a model output with one value per sample ([N] or [N, 1]); labels are 0/1 clicks. When
every baseline score over the whole set lies in [0, 1] the scores are probabilities, otherwise logits
(the sigmoid is applied); both readings are accumulated so the choice waits for the last batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

BUCKETS = 1 << 16
LOGIT_RANGE = 16.0
EPS = float(np.finfo(np.float64).eps)  # probabilities are clipped to [eps, 1 - eps], as scikit-learn does
RANKING_METRICS = ("auc", "auc_drop", "logloss", "logloss_increase", "calibration")
BASELINE_KEYS = ("auc", "logloss", "calibration")


def _hist() -> np.ndarray:
    return np.zeros(BUCKETS, dtype=np.int64)


@dataclass
class _Reading:
    """Sums for one interpretation of the scores (probabilities or logits)."""

    positives: np.ndarray = field(default_factory=_hist)
    negatives: np.ndarray = field(default_factory=_hist)
    # Each bucket's score range: a bucket whose scores are all equal holds exact ties (no error).
    low: np.ndarray = field(default_factory=lambda: np.full(BUCKETS, np.inf))
    high: np.ndarray = field(default_factory=lambda: np.full(BUCKETS, -np.inf))
    logloss: float = 0.0
    predicted: float = 0.0

    def update(
        self, logits: np.ndarray, probability: np.ndarray, loss: np.ndarray, clicks: np.ndarray
    ) -> None:
        scaled = (np.clip(logits, -LOGIT_RANGE, LOGIT_RANGE) + LOGIT_RANGE) / (2 * LOGIT_RANGE)
        bucket = np.minimum((scaled * BUCKETS).astype(np.int64), BUCKETS - 1)
        self.positives += np.bincount(bucket[clicks], minlength=BUCKETS)
        self.negatives += np.bincount(bucket[~clicks], minlength=BUCKETS)
        np.minimum.at(self.low, bucket, logits)
        np.maximum.at(self.high, bucket, logits)
        self.logloss += float(loss.sum())
        self.predicted += float(probability.sum())

    def auc(self) -> tuple[float, float]:
        pos, neg = self.positives.astype(np.float64), self.negatives.astype(np.float64)
        pairs = pos.sum() * neg.sum()
        if pairs == 0:
            return math.nan, math.nan
        below = np.cumsum(neg) - neg  # negatives in lower buckets
        ties = pos * neg
        mixed = float(ties[self.low < self.high].sum())  # pairs of unequal scores counted as ties
        return float((pos * below).sum() + 0.5 * ties.sum()) / pairs, 0.5 * mixed / pairs


@dataclass
class RankingAccumulator:
    """One engine's ranking sums over the stream."""

    as_probability: _Reading = field(default_factory=_Reading)
    as_logit: _Reading = field(default_factory=_Reading)
    in_unit_interval: bool = True
    samples: int = 0
    clicks: int = 0
    non_finite: int = 0

    def update(self, scores: np.ndarray, labels: np.ndarray) -> None:
        x = np.asarray(scores, dtype=np.float64).reshape(-1)
        clicks = np.asarray(labels).reshape(-1) == 1
        finite = np.isfinite(x)
        self.non_finite += int((~finite).sum())
        x, clicks = x[finite], clicks[finite]
        self.in_unit_interval &= bool(((x >= 0) & (x <= 1)).all())
        self.samples += len(x)
        self.clicks += int(clicks.sum())
        y = clicks.astype(np.float64)
        if self.in_unit_interval:  # no use once a score left [0, 1]
            p = np.clip(x, EPS, 1 - EPS)
            loss = -(y * np.log(p) + (1 - y) * np.log1p(-p))
            self.as_probability.update(np.log(p) - np.log1p(-p), x, loss, clicks)
        # log(1 + e^x) - y x, stably; sigmoid likewise
        loss = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
        self.as_logit.update(x, 0.5 * (1 + np.tanh(0.5 * x)), loss, clicks)

    def result(self, logits: bool) -> dict[str, float]:
        if self.non_finite:
            return {
                "auc": math.nan,
                "logloss": math.inf,
                "calibration": math.nan,
                "auc_error_bound": math.nan,
            }
        reading = self.as_logit if logits else self.as_probability
        auc, bound = reading.auc()
        n = max(self.samples, 1)
        ctr = self.clicks / n
        return {
            "auc": auc,
            "auc_error_bound": bound,
            "logloss": reading.logloss / n if self.samples else math.nan,
            "calibration": (reading.predicted / n) / ctr if ctr > 0 else math.nan,
            "ctr": ctr,
            "predicted_ctr": reading.predicted / n if self.samples else math.nan,
        }


def binary(labels: np.ndarray | None) -> bool:
    return labels is not None and labels.size > 0 and bool(np.isin(labels, (0, 1)).all())


def scores_of(outputs: list[np.ndarray], index: int) -> np.ndarray | None:
    """The output at `index` when it holds one score per sample ([N] or [N, 1])."""
    if index >= len(outputs):
        return None
    out = np.asarray(outputs[index])
    return out if out.ndim in (1, 2) and (out.ndim == 1 or out.shape[1] == 1) else None


class RankingSet:
    """The baseline's and every candidate's ranking sums. A batch counts when the labels are 0/1 and
    the baseline's score output has one value per sample; one batch with other labels (class ids,
    regression targets) turns ranking metrics off for the run, so no metric mixes two kinds of data."""

    def __init__(self, candidates: list[str], output_index: int | str | None) -> None:
        self.index = output_index if isinstance(output_index, int) else 0
        self.baseline = RankingAccumulator()
        self.engines = {label: RankingAccumulator() for label in candidates}
        self.off = False
        self._batch = False

    def add_baseline(self, outputs: list[np.ndarray], labels: np.ndarray | None) -> None:
        scores = scores_of(outputs, self.index)
        self._batch = False
        if self.off or labels is None or scores is None:
            return
        if not binary(labels):
            self.off = True
            return
        self._batch = True
        self.baseline.update(scores, labels)

    def add(self, engine: str, outputs: list[np.ndarray], labels: np.ndarray | None) -> None:
        if self._batch and (scores := scores_of(outputs, self.index)) is not None:
            self.engines[engine].update(scores, labels)

    @property
    def logits(self) -> bool:
        return not self.baseline.in_unit_interval

    def baseline_metrics(self) -> dict[str, float]:
        if self.off or not self.baseline.samples:
            return {}
        return {k: v for k, v in self.baseline.result(self.logits).items() if k in BASELINE_KEYS}

    def metrics(self, engine: str) -> dict[str, float]:
        """The engine's ranking metrics and their changes vs the baseline; {} when none apply."""
        acc = self.engines[engine]
        if self.off or not self.baseline.samples or not acc.samples:
            return {}
        own, base = acc.result(self.logits), self.baseline.result(self.logits)
        return {
            **own,
            "auc_drop": base["auc"] - own["auc"],
            "logloss_increase": own["logloss"] - base["logloss"],
            "baseline_auc": base["auc"],
            "baseline_logloss": base["logloss"],
            "baseline_calibration": base["calibration"],
            "auc_drop_error_bound": own["auc_error_bound"] + base["auc_error_bound"],
        }
