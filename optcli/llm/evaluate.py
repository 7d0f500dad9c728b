"""Validation metrics of a quantized causal LM against its baseline on the same token windows.

For windows [n, seq], position t predicts token t+1: perplexity is exp(mean next-token NLL);
token agreement the fraction of positions whose argmax matches the baseline's; KL the mean over
positions of KL(baseline || quantized) in nats. With random weights absolute perplexity says
nothing about language; the baseline-vs-quantized divergence is still the quantization's effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Logits:
    """Next-token log-probabilities [n, seq-1, vocab] and the targets [n, seq-1]."""

    log_probs: Any
    targets: Any


def logits_of(model: Any, windows: Any, batch_size: int = 4) -> Logits:
    import torch

    chunks = []
    with torch.inference_mode():
        for start in range(0, len(windows), batch_size):
            out = model(input_ids=windows[start : start + batch_size]).logits[:, :-1].float()
            chunks.append(torch.log_softmax(out, dim=-1))
    return Logits(torch.cat(chunks), windows[:, 1:])


def perplexity(logits: Logits) -> float:
    nll = -logits.log_probs.gather(-1, logits.targets.unsqueeze(-1)).squeeze(-1)
    return float(math.exp(nll.double().mean().item()))


def token_agreement(baseline: Logits, candidate: Logits) -> float:
    same = baseline.log_probs.argmax(-1) == candidate.log_probs.argmax(-1)
    return float(same.double().mean().item())


def mean_kl(baseline: Logits, candidate: Logits) -> float:
    """KL(P || Q) = sum P (log P - log Q) per position, averaged over positions (nats)."""
    p = baseline.log_probs.double()
    q = candidate.log_probs.double()
    per_position = (p.exp() * (p - q)).sum(-1)
    return float(per_position.clamp(min=0).mean().item())


def compare(baseline: Logits, candidate: Logits, baseline_ppl: float) -> dict[str, float]:
    ppl = perplexity(candidate)
    return {
        "perplexity": ppl,
        "ppl_increase": ppl / baseline_ppl - 1.0,
        "token_agreement": token_agreement(baseline, candidate),
        "kl": mean_kl(baseline, candidate),
    }
