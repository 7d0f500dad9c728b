"""The benchmark stage: the baseline and every saved checkpoint, transformers in this process or
vLLM in its own interpreter. Never cached: timings belong to this machine and moment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from optcli.llm import checkpoint
from optcli.llm.benchmark import benchmark_model, prompt_ids, with_speedups
from optcli.stages.context import StageContext

TRANSFORMERS_NOTE = (
    "transformers on CPU runs a compressed-tensors checkpoint decompressed (weights dequantized at "
    "load, activations fake-quantized in every forward): these rates measure that path, not vLLM's "
    "quantized kernels; use benchmark.engine: vllm for serving numbers"
)


def benchmark_stage(
    ctx: StageContext,
    settings: Any,
    baseline_model: Callable[[], Any],
    baseline_folder: Path,
    saved: list[Any],
    python: Path | None,
) -> dict[str, Any]:
    import torch

    results: dict[str, dict[str, float]] = {}
    with ctx.stage("benchmark") as record:
        if settings.engine == "vllm":
            from optcli.llm.vllm_engine import run_vllm

            args = (settings.prompt_tokens, settings.new_tokens, settings.iterations, settings.timeout_s)
            results["baseline"] = run_vllm(python, baseline_folder, *args)
            for done in saved:
                results[done.scheme] = run_vllm(python, done.folder, *args)
        else:
            base = baseline_model()
            prompt = prompt_ids(base.config.vocab_size, settings.prompt_tokens)
            timing = (settings.new_tokens, settings.iterations, settings.warmup)
            results["baseline"] = benchmark_model(base, prompt, *timing)
            for done in saved:
                loaded = checkpoint.load_saved(done.folder)
                results[done.scheme] = benchmark_model(loaded, prompt, *timing)
                del loaded
        record.details = {"engine": settings.engine, "cached": False}
    if settings.engine == "transformers":
        ctx.warn(TRANSFORMERS_NOTE)
    return {
        "engine": settings.engine,
        "threads": torch.get_num_threads(),
        "results": with_speedups(results, "baseline"),
    }
