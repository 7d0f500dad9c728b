"""Train the built-in digits example model (dev-only; requires scikit-learn).

This script is how the committed files ``optcli/examples/digits/weights.pt`` and
``optcli/examples/digits/digits.npz`` were produced. It is deterministic (fixed seeds,
deterministic torch algorithms, fixed thread count) and runs in well under two minutes
on two CPU cores.

Data: ``sklearn.datasets.load_digits`` (1797 8x8 images, 10 classes), scaled to
``float32 / 16.0`` with shape ``[N, 1, 8, 8]``. It is split, stratified by label, into
three disjoint parts:

* train (1100 samples): the only samples used for gradient steps;
* calibration (256 samples): stored as ``calib_x`` for post-training quantization;
* held-out validation (441 samples): stored as ``val_x`` / ``val_y``, never used for
  training or calibration.

The training split is not stored.

Usage::

    python scripts/train_digits.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from optcli.examples.digits.data import DATA_PATH  # noqa: E402
from optcli.examples.digits.model import WEIGHTS_PATH, DigitsCNN  # noqa: E402

SEED = 0
N_TRAIN = 1100
N_CALIB = 256
EPOCHS = 40
BATCH_SIZE = 64
LR = 3e-3
TARGET_VAL_ACC = 0.97


def seed_everything(seed: int) -> None:
    """Make the run reproducible."""
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(2)


def make_splits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return disjoint, stratified train / calib / val splits as ``(x, y)`` pairs."""
    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = digits.target.astype(np.int64)
    idx = np.arange(len(y))

    train_idx, rest_idx = train_test_split(idx, train_size=N_TRAIN, stratify=y, random_state=SEED)
    calib_idx, val_idx = train_test_split(
        rest_idx, train_size=N_CALIB, stratify=y[rest_idx], random_state=SEED
    )

    sets = [set(train_idx.tolist()), set(calib_idx.tolist()), set(val_idx.tolist())]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert sum(len(s) for s in sets) == len(y)

    return {
        "train": (x[train_idx], y[train_idx]),
        "calib": (x[calib_idx], y[calib_idx]),
        "val": (x[val_idx], y[val_idx]),
    }


@torch.no_grad()
def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on ``(x, y)``."""
    model.eval()
    logits = model(torch.from_numpy(x))
    return float((logits.argmax(dim=1).numpy() == y).mean())


def random_shift(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Light augmentation: shift each image by up to one pixel (zero padded)."""
    padded = nn.functional.pad(xb, (1, 1, 1, 1))
    offsets = torch.randint(0, 3, (xb.shape[0], 2), generator=gen)
    out = torch.empty_like(xb)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + 8, dx : dx + 8]
    return out


def train(splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> nn.Module:
    """Train :class:`DigitsCNN` on the train split with Adam."""
    x_train, y_train = (torch.from_numpy(a) for a in splits["train"])
    x_val, y_val = splits["val"]
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED)

    for epoch in range(1, EPOCHS + 1):
        model.train()
        perm = torch.randperm(len(y_train), generator=gen)
        total = 0.0
        for start in range(0, len(perm), BATCH_SIZE):
            batch = perm[start : start + BATCH_SIZE]
            xb = random_shift(x_train[batch], gen)
            loss = loss_fn(model(xb), y_train[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        sched.step()
        if epoch % 5 == 0 or epoch == EPOCHS:
            train_acc = accuracy(model, *splits["train"])
            val_acc = accuracy(model, x_val, y_val)
            print(
                f"epoch {epoch:3d}  loss {total / len(perm):.4f}  "
                f"train_acc {train_acc:.4f}  val_acc {val_acc:.4f}"
            )
    model.eval()
    return model


def main() -> None:
    """Train, evaluate and write the committed weights and data files."""
    seed_everything(SEED)
    t0 = time.perf_counter()
    splits = make_splits()
    model = train(splits)
    elapsed = time.perf_counter() - t0

    train_acc = accuracy(model, *splits["train"])
    calib_acc = accuracy(model, *splits["calib"])
    val_acc = accuracy(model, *splits["val"])
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params: {n_params}")
    print(f"final train_acc {train_acc:.4f}  calib_acc {calib_acc:.4f}  val_acc {val_acc:.4f}")
    print(f"training time: {elapsed:.1f}s")
    if val_acc < TARGET_VAL_ACC:
        raise SystemExit(f"held-out accuracy {val_acc:.4f} < {TARGET_VAL_ACC}; not saving")

    state_dict = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state_dict, WEIGHTS_PATH)
    calib_x, _ = splits["calib"]
    val_x, val_y = splits["val"]
    np.savez_compressed(
        DATA_PATH,
        calib_x=np.ascontiguousarray(calib_x, dtype=np.float32),
        val_x=np.ascontiguousarray(val_x, dtype=np.float32),
        val_y=np.ascontiguousarray(val_y, dtype=np.int64),
    )
    print(f"wrote {WEIGHTS_PATH} ({WEIGHTS_PATH.stat().st_size} bytes)")
    print(f"wrote {DATA_PATH} ({DATA_PATH.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
