"""A DLRM-style click-through-rate model: dense features through a bottom MLP, one embedding row per
sparse feature, pairwise dot interaction, top MLP, sigmoid.

The embedding tables are not trained and not committed: each is generated from a seed (N(0, 0.25²)
rows), so the 26 tables of the `full` variant (1.5M rows x 64, 394 MB in FP32) cost nothing in the
repository. The click labels come from a seeded *teacher* DLRM over the same tables (see data.py),
so the ground truth is learnable; the committed `weights.pt` holds the MLPs of a *student* DLRM
trained on that click log by scripts/train_recsys.py. The `small` variant (three small tables, for
tests) uses the teacher itself as the model: it needs no training and its AUC is the best possible.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS_PATH: Path = Path(__file__).with_name("weights.pt")
EMBEDDING_STD = 0.25


@dataclass(frozen=True)
class Variant:
    name: str
    rows: tuple[int, ...]  # rows of each embedding table (one sparse feature each)
    dim: int = 64
    dense: int = 13
    seed: int = 2024

    @property
    def tables(self) -> int:
        return len(self.rows)


# 26 tables of Criteo-like sizes: a few with up to 10^6 rows, most small.
FULL = Variant(
    "full",
    (1_000_000, 200_000, 100_000, 50_000, 50_000, 20_000, 20_000, 20_000)
    + (10_000,) * 4
    + (5_000,) * 6
    + (1_000,) * 8,
)
SMALL = Variant("small", (4_096, 1_024, 512), dim=16, dense=4)
VARIANTS = {v.name: v for v in (FULL, SMALL)}


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown recsys variant '{name}'; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


@lru_cache(maxsize=2)
def tables(name: str) -> tuple[np.ndarray, ...]:
    """The variant's embedding tables, the same bytes on every machine (numpy's PCG64 stream)."""
    v = variant(name)
    return tuple(
        (np.random.default_rng([v.seed, index]).standard_normal((rows, v.dim), np.float32) * EMBEDDING_STD)
        for index, rows in enumerate(v.rows)
    )


def _mlp(sizes: list[int], last_relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(fan_in, fan_out))
        if last_relu or index < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    """dense float32 [B, dense], sparse int64 [B, tables] (one id per table) -> CTR in (0, 1), [B, 1]."""

    def __init__(
        self, v: Variant, bottom: tuple[int, ...] = (128,), top: tuple[int, ...] = (256, 128)
    ) -> None:
        super().__init__()
        self.tables = nn.ModuleList(
            nn.Embedding.from_pretrained(torch.from_numpy(table), freeze=True) for table in tables(v.name)
        )
        self.bottom = _mlp([v.dense, *bottom, v.dim], last_relu=True)
        features = v.tables + 1
        upper = torch.triu_indices(features, features, offset=1)
        # Flat positions of the upper triangle of the [F, F] dot matrix: one Gather in the graph.
        self.register_buffer("pairs", upper[0] * features + upper[1], persistent=False)
        self.top = _mlp([v.dim + len(self.pairs), *top, 1], last_relu=False)

    def logits(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        x = self.bottom(dense)
        rows = [table(sparse[:, i]) for i, table in enumerate(self.tables)]
        features = torch.stack([x, *rows], dim=1)  # [B, F, dim]
        dots = torch.bmm(features, features.transpose(1, 2)).flatten(1)  # [B, F*F]
        return self.top(torch.cat([x, dots[:, self.pairs]], dim=1))

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(dense, sparse))


def mlp_state(model: DLRM) -> dict[str, torch.Tensor]:
    """What weights.pt holds: everything but the generated tables."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("tables.")}


@lru_cache(maxsize=2)
def teacher(name: str) -> DLRM:
    """The seeded ground-truth model the click labels are drawn from (numpy init: stable across torch)."""
    v = variant(name)
    model = DLRM(v, bottom=(32,), top=(64,))
    rng = np.random.default_rng([v.seed, 10_000])
    with torch.no_grad():
        for layer in (m for m in model.modules() if isinstance(m, nn.Linear)):
            fan_in = layer.weight.shape[1]
            weight = rng.standard_normal(tuple(layer.weight.shape)) * np.sqrt(2.0 / fan_in)
            layer.weight.copy_(torch.from_numpy(weight.astype(np.float32)))
            layer.bias.copy_(
                torch.from_numpy((rng.standard_normal(layer.bias.shape[0]) * 0.1).astype(np.float32))
            )
        # Scale the output to a CTR-like spread: logits N(-1.4, 1.5²) over a probe sample (AUC ~0.8).
        from optcli.examples.recsys.data import features

        dense, sparse = features(v, 4096, np.random.default_rng([v.seed, 20_000]))
        z = model.logits(torch.from_numpy(dense), torch.from_numpy(sparse)).squeeze(1)
        last = model.top[-1]
        scale = 1.5 / float(z.std())
        last.weight.mul_(scale)
        last.bias.copy_((last.bias - float(z.mean())) * scale - 1.4)
    return model.eval()


def load_model(variant_name: str = "full") -> DLRM:
    """The example model in eval mode: the trained student (full) or the teacher (small)."""
    v = variant(variant_name)
    if v is SMALL:
        return teacher(v.name)
    model = DLRM(v)
    model.load_state_dict(torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True), strict=False)
    return model.eval()
