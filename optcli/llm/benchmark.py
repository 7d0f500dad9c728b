"""Tokens per second with transformers on CPU: prefill (the prompt in one forward, whose end is the
time to first token) and decode (greedy tokens one at a time with the KV cache).

Prompt length and new-token count are fixed and EOS is ignored, so every model does the same work.
"""

from __future__ import annotations

import inspect
import statistics
import time
from typing import Any


def prompt_ids(vocab_size: int, length: int, seed: int = 0) -> Any:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (1, length), generator=generator)


def time_generation(model: Any, prompt: Any, new_tokens: int) -> tuple[float, float]:
    """(prefill seconds, decode seconds for new_tokens - 1 steps after the first token)."""
    import torch

    # transformers 5.2x renamed past_key_values to cache (the old name warns until 5.40)
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    with torch.inference_mode():
        start = time.perf_counter()
        out = model(input_ids=prompt, use_cache=True)
        token = out.logits[:, -1:].argmax(-1)
        first = time.perf_counter()
        for _ in range(new_tokens - 1):
            out = model(input_ids=token, use_cache=True, **{name: getattr(out, name)})
            token = out.logits[:, -1:].argmax(-1)
        end = time.perf_counter()
    return first - start, end - first


def benchmark_model(
    model: Any, prompt: Any, new_tokens: int, iterations: int, warmup: int
) -> dict[str, float]:
    for _ in range(warmup):
        time_generation(model, prompt, new_tokens)
    runs = [time_generation(model, prompt, new_tokens) for _ in range(iterations)]
    prefill = statistics.median(r[0] for r in runs)
    decode = statistics.median(r[1] for r in runs)
    steps = max(new_tokens - 1, 1)
    return {
        "ttft_ms": prefill * 1000,
        "prefill_tokens_per_s": prompt.shape[1] / prefill,
        "decode_tokens_per_s": steps / decode if decode > 0 else float("inf"),
        "prompt_tokens": int(prompt.shape[1]),
        "new_tokens": new_tokens,
        "iterations": iterations,
    }


def with_speedups(results: dict[str, dict[str, float]], baseline: str) -> dict[str, dict[str, float]]:
    """Each model's rates divided by the baseline's (> 1: faster)."""
    base = results[baseline]
    for entry in results.values():
        entry["prefill_speedup"] = entry["prefill_tokens_per_s"] / base["prefill_tokens_per_s"]
        entry["decode_speedup"] = entry["decode_tokens_per_s"] / base["decode_tokens_per_s"]
    return results
