"""Fidelity metrics between a baseline and a candidate, accumulated batch by batch (flat memory).

Non-finite values are never hidden: a candidate (or baseline) NaN/Inf makes the error metrics
infinite and the cosine NaN, so no threshold can hold on them, and the counts say how many.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass
class OutputAccumulator:
    """Running sums for one output: enough for cosine, relative L2, SNR and max abs error."""

    dot: float = 0.0
    ref_sq: float = 0.0
    cand_sq: float = 0.0
    err_sq: float = 0.0
    max_abs: float = 0.0
    non_finite: int = 0  # candidate values that are NaN/Inf
    baseline_non_finite: int = 0
    count: int = 0
    # Worst single sample (rows along the first axis): one bad input among many good ones hides in
    # the global sums, not here.
    cosine_min: float = math.inf
    snr_db_min: float = math.inf

    def update(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        ref = np.asarray(reference, dtype=np.float64).ravel()
        cand = np.asarray(candidate, dtype=np.float64).ravel()
        if ref.shape != cand.shape:
            raise ValueError(f"output shapes differ: baseline {reference.shape}, candidate {candidate.shape}")
        finite = np.isfinite(cand) & np.isfinite(ref)
        self.non_finite += int(cand.size - np.isfinite(cand).sum())
        self.baseline_non_finite += int(ref.size - np.isfinite(ref).sum())
        # The sums stay finite (over the finite pairs); result() reports the non-finite ones as such.
        ref, cand = np.where(finite, ref, 0.0), np.where(finite, cand, 0.0)
        err = ref - cand
        self.dot += float(ref @ cand)
        self.ref_sq += float(ref @ ref)
        self.cand_sq += float(cand @ cand)
        self.err_sq += float(err @ err)
        self.max_abs = max(self.max_abs, float(np.abs(err).max(initial=0.0)))
        self.count += ref.size
        if ref.size:
            rows = len(reference) if np.ndim(reference) else 1
            cosines, snrs = per_sample(ref.reshape(rows, -1), cand.reshape(rows, -1))
            self.cosine_min = min(self.cosine_min, float(cosines.min()))
            self.snr_db_min = min(self.snr_db_min, float(snrs.min()))

    def result(self) -> dict[str, float]:
        counts = {
            "non_finite": float(self.non_finite),
            "baseline_non_finite": float(self.baseline_non_finite),
            "values": float(self.count),
        }
        if self.non_finite or self.baseline_non_finite:
            return {
                "cosine": math.nan,
                "cosine_min": math.nan,
                "max_abs": math.inf,
                "rel_l2": math.inf,
                "snr_db": -math.inf,
                "snr_db_min": -math.inf,
                **counts,
            }
        if self.count == 0:  # nothing compared: nothing can pass
            nan = math.nan
            return {
                **dict.fromkeys(("cosine", "cosine_min", "max_abs", "rel_l2", "snr_db", "snr_db_min"), nan),
                **counts,
            }
        norms = math.sqrt(self.ref_sq) * math.sqrt(self.cand_sq)
        cosine = self.dot / norms if norms > 0 else (1.0 if self.err_sq == 0 else 0.0)
        rel_l2 = math.sqrt(self.err_sq / self.ref_sq) if self.ref_sq > 0 else math.sqrt(self.err_sq)
        if self.err_sq == 0:
            snr = math.inf
        else:
            snr = 10 * math.log10(self.ref_sq / self.err_sq) if self.ref_sq > 0 else -math.inf
        return {
            "cosine": cosine,
            "cosine_min": self.cosine_min,
            "max_abs": self.max_abs,
            "rel_l2": rel_l2,
            "snr_db": snr,
            "snr_db_min": self.snr_db_min,
            **counts,
        }


def per_sample(ref: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine and SNR (dB) of each row ([samples, values], finite float64): a row that is zero in
    both is cosine 1; an exact row is SNR +inf."""
    dot = np.einsum("ij,ij->i", ref, cand)
    ref_sq, cand_sq = np.einsum("ij,ij->i", ref, ref), np.einsum("ij,ij->i", cand, cand)
    err = ref - cand
    err_sq = np.einsum("ij,ij->i", err, err)
    norms = np.sqrt(ref_sq) * np.sqrt(cand_sq)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosines = np.where(norms > 0, dot / np.where(norms > 0, norms, 1.0), np.where(err_sq == 0, 1.0, 0.0))
        snr = np.where(
            err_sq == 0,
            np.inf,
            np.where(ref_sq > 0, 10 * np.log10(ref_sq / np.where(err_sq == 0, 1.0, err_sq)), -np.inf),
        )
    return cosines, snr


@dataclass
class ClassAccumulator:
    """Top-1 agreement with the baseline and, when labels come with the data, task accuracy."""

    agree: int = 0
    correct: int = 0
    baseline_correct: int = 0
    samples: int = 0
    labelled: int = 0

    def update(self, reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None) -> None:
        ref_top = np.asarray(reference).reshape(len(reference), -1).argmax(axis=1)
        cand_top = np.asarray(candidate).reshape(len(candidate), -1).argmax(axis=1)
        self.agree += int((ref_top == cand_top).sum())
        self.samples += len(ref_top)
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            self.correct += int((cand_top == labels).sum())
            self.baseline_correct += int((ref_top == labels).sum())
            self.labelled += len(labels)

    def result(self) -> dict[str, float]:
        out = {"top1_agreement": self.agree / self.samples if self.samples else math.nan}
        if self.labelled:
            out["accuracy"] = self.correct / self.labelled
            out["baseline_accuracy"] = self.baseline_correct / self.labelled
            out["accuracy_drop"] = out["baseline_accuracy"] - out["accuracy"]
        return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    acc = OutputAccumulator()
    acc.update(a, b)
    return acc.result()["cosine"]


def _worst(values: Iterable[float], pick) -> float:
    """min/max that let NaN win: Python's min([0.9, nan]) is 0.9, which would hide the NaN."""
    values = list(values)
    return math.nan if any(math.isnan(v) for v in values) else pick(values)


def summarize(per_output: dict[str, dict[str, float]]) -> dict[str, float]:
    """Worst case over outputs (what gates compare against), with the non-finite counts summed."""
    values = list(per_output.values())
    return {
        "cosine": _worst((v["cosine"] for v in values), min),
        "max_abs": _worst((v["max_abs"] for v in values), max),
        "rel_l2": _worst((v["rel_l2"] for v in values), max),
        "snr_db": _worst((v["snr_db"] for v in values), min),
        # Older cached results lack the per-sample values: absent, not guessed.
        **{
            key: _worst((v[key] for v in values), min)
            for key in ("cosine_min", "snr_db_min")
            if all(key in v for v in values)
        },
        **{
            key: sum(v.get(key, 0.0) for v in values)
            for key in ("non_finite", "baseline_non_finite", "values")
        },
    }


def non_finite_problem(summary: dict[str, float]) -> str | None:
    """Why no fidelity gate can pass on these metrics (NaN/Inf values), or None."""
    total = int(summary.get("values", 0))
    if summary.get("baseline_non_finite"):
        return (
            f"{int(summary['baseline_non_finite'])} of {total} baseline output values are NaN/Inf: "
            "nothing to compare against"
        )
    if summary.get("non_finite"):
        return f"{int(summary['non_finite'])} of {total} output values are NaN/Inf"
    return None
