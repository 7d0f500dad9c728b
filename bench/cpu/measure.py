"""Accuracy against the eager FP32 baseline, interleaved timing, and the recipe's gates on the results."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from bench.cpu.candidates import Candidate


def accuracy(
    candidates: list[Candidate], baseline: Candidate, data: list[dict[str, np.ndarray]], classifier: bool
) -> dict[str, dict[str, float]]:
    reference = [baseline.run(x) for x in data]
    results = {}
    for candidate in candidates:
        cosines, agree, dot, norm_a, norm_b = [], [], 0.0, 0.0, 0.0
        for x, ref in zip(data, reference):
            out = np.asarray(candidate.run(x), dtype=np.float32)
            a, b = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
            denominator = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
            cosines += list((a * b).sum(1) / np.maximum(denominator, 1e-30))
            dot += float((a.astype(np.float64) * b).sum())
            norm_a += float((a.astype(np.float64) ** 2).sum())
            norm_b += float((b.astype(np.float64) ** 2).sum())
            if classifier:
                agree += list(a.argmax(1) == b.argmax(1))
        results[candidate.label] = {
            "cosine": float(np.mean(cosines)),
            "cosine_min": float(np.min(cosines)),
            "cosine_global": dot / max(np.sqrt(norm_a * norm_b), 1e-30),  # optcli's definition
            **({"top1_agreement": float(np.mean(agree))} if classifier else {}),
        }
    return results


def time_interleaved(
    candidates: list[Candidate], *, passes: int, rounds: int, iters: int, warmup: int
) -> None:
    """Round-robin: each round runs every engine (rotated order) for `iters` timed calls."""
    for candidate in candidates:
        for _ in range(warmup):
            candidate.timed()
    for _ in range(passes):
        round_p50s: dict[str, list[float]] = {c.label: [] for c in candidates}
        for r in range(rounds):
            shift = r % len(candidates)
            for candidate in candidates[shift:] + candidates[:shift]:
                candidate.timed()  # untimed: caches and branch predictors after the other engines
                timings = []
                for _ in range(iters):
                    start = time.perf_counter()
                    candidate.timed()
                    timings.append(time.perf_counter() - start)
                round_p50s[candidate.label].append(statistics.median(timings) * 1000.0)
        for candidate in candidates:
            candidate.p50s.append(round_p50s[candidate.label])


def failed_gates(row: dict[str, Any], gates: dict[str, str]) -> list[str]:
    """The recipe's validate gates this engine misses on the suite's held-out samples (cosine as
    optcli computes it: over all outputs at once)."""
    from optcli.gates import Threshold

    values = {
        "cosine": row.get("cosine_global"),
        "cosine_min": row.get("cosine_min"),  # the worst single sample, as optcli's gate of that name
        "top1_agreement": row.get("top1_agreement"),
    }
    return [
        f"{metric} {values[metric]:.4g} (needs {expr})"
        for metric, expr in gates.items()
        if values.get(metric) is not None and not Threshold.parse(expr).holds(values[metric])
    ]
