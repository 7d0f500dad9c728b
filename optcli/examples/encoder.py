"""A BERT-style text encoder (embeddings + nn.TransformerEncoder + classifier), random weights.

It exercises what transformer models need from the pipeline: integer token inputs, two inputs
with a shared dynamic `seq` dim, attention masks and a tuple output.
"""

from __future__ import annotations

import torch
from torch import nn


class TextEncoder(nn.Module):
    """input_ids, attention_mask [batch, seq] -> (class logits [batch, classes], hidden [batch, seq, d])."""

    def __init__(
        self,
        vocab: int = 8000,
        d_model: int = 256,
        heads: int = 4,
        layers: int = 4,
        classes: int = 4,
        max_len: int = 512,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            dim_feedforward=4 * d_model,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=False,
        )
        # Nested tensors are an eager-only fast path; the exporters need the plain path.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        hidden = self.tokens(input_ids) + self.positions(positions)
        hidden = self.encoder(hidden, src_key_padding_mask=attention_mask == 0)
        hidden = self.norm(hidden)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.classifier(pooled), hidden


def text_encoder(seed: int = 0, **sizes: int) -> TextEncoder:
    """Seeded random weights: the point is the pipeline's handling of a transformer, not its task."""
    torch.manual_seed(seed)
    return TextEncoder(**sizes).eval()
