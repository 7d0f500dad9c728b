"""A synthetic click log for the recsys example: dense features, skewed sparse ids, seeded labels.

Ids follow a Zipf-like law (P(k) ~ 1/(k+1), log-uniform draws), scattered over each table by a
multiplicative hash, so a few rows take most traffic as in real logs. A label is a Bernoulli draw
from the teacher model's CTR on the sample, so a model can learn it and AUC means something.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from optcli.examples.recsys.model import Variant, variant

HASH_PRIME = 999_983  # coprime to every table size: k -> k * prime mod rows is a bijection
CALIBRATION_SEED = 1
VALIDATION_SEED = 2


def features(v: Variant, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    dense = rng.standard_normal((count, v.dense), np.float32)
    sparse = np.empty((count, v.tables), np.int64)
    for index, rows in enumerate(v.rows):
        ranks = np.floor(np.exp(rng.random(count) * np.log(rows))).astype(np.int64) - 1
        sparse[:, index] = (ranks * HASH_PRIME + 7919 * index) % rows
    return dense, sparse


def click_log(
    variant_name: str = "full", samples: int = 4096, batch_size: int = 512, seed: int = VALIDATION_SEED
) -> Iterator[dict[str, np.ndarray]]:
    """Batches {dense: float32 [b, 13], sparse: int64 [b, 26], labels: int64 [b]} (0/1 clicks)."""
    from optcli.examples.recsys.model import teacher

    v = variant(variant_name)
    truth = teacher(v.name)
    rng = np.random.default_rng([v.seed, seed])
    for start in range(0, samples, batch_size):
        dense, sparse = features(v, min(batch_size, samples - start), rng)
        with torch.no_grad():
            ctr = truth(torch.from_numpy(dense), torch.from_numpy(sparse)).squeeze(1).numpy()
        labels = (rng.random(len(ctr)) < ctr).astype(np.int64)
        yield {"dense": dense, "sparse": sparse, "labels": labels}


def calibration_batches(
    variant_name: str = "full", samples: int = 512, batch_size: int = 128
) -> Iterator[dict[str, np.ndarray]]:
    for batch in click_log(variant_name, samples, batch_size, CALIBRATION_SEED):
        batch.pop("labels")
        yield batch


def validation_batches(
    variant_name: str = "full", samples: int = 16384, batch_size: int = 512
) -> Iterator[dict[str, np.ndarray]]:
    return click_log(variant_name, samples, batch_size, VALIDATION_SEED)
