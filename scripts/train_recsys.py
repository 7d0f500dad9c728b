"""Train the MLPs of the recsys example's student DLRM (dev-only) -> optcli/examples/recsys/weights.pt.

The embedding tables stay as generated from their seed (frozen); the student learns its bottom and
top MLPs from a click log drawn from the teacher (training seed 100, disjoint from the calibration
and validation seeds), so the committed file is only the MLPs (~0.6 MB). Deterministic: fixed
seeds, one thread, a fixed number of steps (1500 x 2048 samples: 14 minutes on two busy CPU
cores; validation AUC 0.780, the teacher 0.820).

Usage::

    python scripts/train_recsys.py [--steps 1500] [--batch-size 2048]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from optcli.examples.recsys.data import click_log  # noqa: E402
from optcli.examples.recsys.model import DLRM, FULL, WEIGHTS_PATH, mlp_state  # noqa: E402

TRAIN_SEED = 100


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels.sum()
    return float(
        (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * (len(labels) - positives))
    )


def evaluate(model: DLRM) -> tuple[float, float]:
    from optcli.examples.recsys.model import teacher

    labels, student, best = [], [], []
    truth = teacher(FULL.name)
    with torch.no_grad():
        for batch in click_log(FULL.name, samples=16384, batch_size=4096):
            dense, sparse = torch.from_numpy(batch["dense"]), torch.from_numpy(batch["sparse"])
            labels.append(batch["labels"])
            student.append(model(dense, sparse).squeeze(1).numpy())
            best.append(truth(dense, sparse).squeeze(1).numpy())
    y = np.concatenate(labels)
    return auc(y, np.concatenate(student)), auc(y, np.concatenate(best))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=2048)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model = DLRM(FULL)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    loss_fn = nn.BCEWithLogitsLoss()
    start = time.perf_counter()
    log = click_log(
        FULL.name, samples=args.steps * args.batch_size, batch_size=args.batch_size, seed=TRAIN_SEED
    )
    for step, batch in enumerate(log, 1):
        logits = model.logits(torch.from_numpy(batch["dense"]), torch.from_numpy(batch["sparse"])).squeeze(1)
        loss = loss_fn(logits, torch.from_numpy(batch["labels"]).float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 250 == 0:
            print(f"step {step}: loss {loss.item():.4f} ({time.perf_counter() - start:.0f} s)")
    model.eval()
    student, best = evaluate(model)
    print(f"validation AUC: student {student:.4f}, teacher (best possible) {best:.4f}")
    torch.save(mlp_state(model), WEIGHTS_PATH)
    print(f"wrote {WEIGHTS_PATH} ({WEIGHTS_PATH.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
