"""Fidelity metrics between a baseline and a candidate, accumulated batch by batch (flat memory)."""

from __future__ import annotations

import math
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
    non_finite: int = 0
    count: int = 0

    def update(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        ref = np.asarray(reference, dtype=np.float64).ravel()
        cand = np.asarray(candidate, dtype=np.float64).ravel()
        if ref.shape != cand.shape:
            raise ValueError(f"output shapes differ: baseline {reference.shape}, candidate {candidate.shape}")
        finite = np.isfinite(cand)
        self.non_finite += int(cand.size - finite.sum())
        cand = np.where(finite, cand, 0.0)
        err = ref - cand
        self.dot += float(ref @ cand)
        self.ref_sq += float(ref @ ref)
        self.cand_sq += float(cand @ cand)
        self.err_sq += float(err @ err)
        self.max_abs = max(self.max_abs, float(np.abs(err).max(initial=0.0)))
        self.count += ref.size

    def result(self) -> dict[str, float]:
        norms = math.sqrt(self.ref_sq) * math.sqrt(self.cand_sq)
        cosine = self.dot / norms if norms > 0 else (1.0 if self.err_sq == 0 else 0.0)
        rel_l2 = math.sqrt(self.err_sq / self.ref_sq) if self.ref_sq > 0 else math.sqrt(self.err_sq)
        if self.err_sq == 0:
            snr = math.inf
        else:
            snr = 10 * math.log10(self.ref_sq / self.err_sq) if self.ref_sq > 0 else -math.inf
        return {
            "cosine": cosine,
            "max_abs": self.max_abs,
            "rel_l2": rel_l2,
            "snr_db": snr,
            "non_finite": float(self.non_finite),
        }


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


def summarize(per_output: dict[str, dict[str, float]]) -> dict[str, float]:
    """Worst case over outputs: what gates compare against."""
    values = list(per_output.values())
    return {
        "cosine": min(v["cosine"] for v in values),
        "max_abs": max(v["max_abs"] for v in values),
        "rel_l2": max(v["rel_l2"] for v in values),
        "snr_db": min(v["snr_db"] for v in values),
    }
