"""One model end to end: optcli's run, the by-hand peers, timing, accuracy, one result row per engine."""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from typing import Any

import numpy as np

from bench.cpu.byhand import (
    convert_from_torch,
    quantize_nncf_by_hand,
    quantize_nncf_from_torch,
    quantize_ort_by_hand,
)
from bench.cpu.candidates import (
    best_compiled,
    optcli_candidate,
    ort_candidate,
    ov_candidate,
    torch_candidate,
)
from bench.cpu.measure import accuracy, failed_gates, time_interleaved
from bench.cpu.models import ROOT, SMOKE_OVERRIDES, ModelSpec


def stream_list(source: Any, recipe: Any, field: str, batch_size: int, samples: int) -> list[dict]:
    from optcli.calibration import SourceContext, stream
    from optcli.specs import ShapeResolver

    model = recipe.model
    resolver = ShapeResolver(model.inputs, model.dims, model.batch_dim)
    ctx = SourceContext(resolver, recipe.base_dir, field)
    names = [s.name for s in model.inputs]
    return [{n: b[n] for n in names} for b in stream(source, ctx, batch_size=batch_size, samples=samples)]


def timing_feeds(recipe: Any, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Batch 1 at the recipe's `opt` sizes: a real text for MiniLM, seeded N(0,1) otherwise."""
    from optcli.calibration.synthetic import random_batch
    from optcli.specs import ShapeResolver

    model = recipe.model
    resolver = ShapeResolver(model.inputs, model.dims, model.batch_dim)
    sizes = resolver.sizes(batch_size=1)
    if spec.name == "minilm":
        from optcli.examples.minilm import sentences, tokenize

        feeds = tokenize([" ".join(sentences())], pad_to=sizes["seq"])
        assert feeds["attention_mask"].all(), "the timing text must fill the sequence"
        return feeds
    return random_batch(resolver, sizes, seed=7)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_model(spec: ModelSpec, args: argparse.Namespace, threads: int | None) -> dict[str, Any]:
    import torch

    from optcli.console import SilentUI
    from optcli.loading import load_torch_model
    from optcli.onnx_io import load_model
    from optcli.pipeline import run_recipe
    from optcli.quantization.patterns import looks_like_transformer
    from optcli.recipe import load_recipe

    started = time.perf_counter()
    overrides = list(spec.overrides) + (list(SMOKE_OVERRIDES) if args.smoke else [])
    if threads is not None:  # optcli chooses at the thread count the suite times at
        overrides.append(f"benchmark.threads={threads}")
    recipe = load_recipe(ROOT / spec.recipe, overrides)
    run_dir = args.work / f"{spec.name}-{threads or 'recipe'}t"
    log(f"{spec.name}: optcli run {spec.recipe} {' '.join('--set ' + o for o in overrides)} -> {run_dir}")
    report = run_recipe(recipe, run_dir, SilentUI()).to_dict()
    log(f"{spec.name}: optcli chose {report['selection'].get('chosen')} (status {report['status']})")
    stage_seconds = {s["name"]: s["seconds"] for s in report["stages"]}

    threads = threads or recipe.benchmark.threads
    if threads:
        torch.set_num_threads(threads)
    names = [s.name for s in recipe.model.inputs]
    calibration = recipe.quantization.calibration
    calib = stream_list(
        calibration.data, recipe, "quantization.calibration.data", calibration.batch_size, calibration.samples
    )
    calib_samples = [{n: b[n][i : i + 1] for n in names} for b in calib for i in range(len(b[names[0]]))]
    samples = 4 if args.smoke else spec.accuracy_samples
    held_out = stream_list(recipe.validate_.data, recipe, "validate.data", 1, samples)
    feeds = timing_feeds(recipe, spec)
    exported = run_dir / "exported.onnx"
    transformer = looks_like_transformer(load_model(exported, load_external_data=False))

    log(f"{spec.name}: by-hand ORT quant_pre_process + quantize_static ({len(calib_samples)} samples)")
    t = time.perf_counter()
    ort_path = run_dir / "byhand-ort-int8.onnx"
    quantize_ort_by_hand(exported, ort_path, calib)
    ort_seconds = time.perf_counter() - t
    log(f"{spec.name}: by-hand NNCF ({'transformer' if transformer else 'default'} model type)")
    t = time.perf_counter()
    nncf_model = quantize_nncf_by_hand(exported, calib_samples, transformer)
    nncf_seconds = time.perf_counter() - t

    model = load_torch_model(recipe.model, recipe.base_dir)
    log(f"{spec.name}: by-hand NNCF on ov.convert_model of the PyTorch model")
    t = time.perf_counter()
    from_torch = quantize_nncf_from_torch(model, calib_samples, names, transformer)
    from_torch_seconds = time.perf_counter() - t
    baseline = torch_candidate("eager-fp32 (baseline)", model, names, feeds)
    candidates = [baseline]
    if not args.no_compile:
        log(f"{spec.name}: torch.compile fp32 and bf16-autocast")
        candidates.append(best_compiled(model, names, feeds, trial_calls=2 if args.smoke else 8))
    try:
        candidates.append(
            ort_candidate(
                "ort-int8-byhand",
                ort_path,
                threads,
                feeds,
                "pre-processed, quantize_static defaults, per-channel",
            )
        )
    except Exception as exc:  # a peer ORT cannot load is that peer's result, not the suite's end
        log(f"{spec.name}: ort-int8-byhand left out, ORT cannot load it: {str(exc)[-160:]}")
    candidates.append(
        ov_candidate(
            "ov-nncf-int8-byhand",
            nncf_model,
            threads,
            feeds,
            f"nncf.quantize{' (model_type transformer)' if transformer else ''}",
        )
    )
    candidates.append(
        ov_candidate(
            "ov-from-torch",
            convert_from_torch(model, calib_samples[0], names),
            threads,
            feeds,
            "ov.convert_model(PyTorch), no quantization",
        )
    )
    candidates.append(
        ov_candidate(
            "ov-nncf-int8-from-torch",
            from_torch,
            threads,
            feeds,
            f"ov.convert_model(PyTorch) + nncf.quantize{' (model_type transformer)' if transformer else ''}",
        )
    )
    candidates.append(optcli_candidate(recipe, report, run_dir, feeds))

    log(f"{spec.name}: timing {len(candidates)} engines interleaved")
    t = time.perf_counter()
    time_interleaved(candidates, passes=args.passes, rounds=args.rounds, iters=args.iters, warmup=args.warmup)
    timing_seconds = time.perf_counter() - t
    # After timing: torch.compile recompiles for the variable-length sentences of MiniLM.
    log(f"{spec.name}: accuracy on {len(held_out)} held-out samples")
    acc = accuracy(candidates[1:], baseline, held_out, spec.classifier)
    rows = []
    base = [statistics.median(p) for p in baseline.p50s]
    gates = dict(recipe.validate_.gates)
    for candidate in candidates:
        passes_ms = [statistics.median(p) for p in candidate.p50s]
        rows.append(
            {
                "engine": candidate.label,
                "p50_ms": passes_ms,
                "speedup": statistics.mean(b / p for b, p in zip(base, passes_ms)),
                **acc.get(candidate.label, {"cosine": 1.0, "cosine_min": 1.0, "cosine_global": 1.0}),
                **({"top1_agreement": 1.0} if spec.classifier and candidate is baseline else {}),
                "note": candidate.note,
            }
        )
        rows[-1]["failed_gates"] = None if candidate is baseline else failed_gates(rows[-1], gates)
    for candidate in candidates:
        candidate.close()
    del candidates, baseline, model, nncf_model, from_torch
    gc.collect()
    selection = report["selection"]
    return {
        "model": spec.name,
        "recipe": spec.recipe,
        "overrides": overrides,
        "threads": threads,
        "rows": rows,
        "chosen": selection.get("chosen"),
        "ranking": selection.get("ranking", []),
        "verdict": report.get("verdict"),
        "gates": gates,
        "timing_feeds": {k: list(v.shape) for k, v in feeds.items()},
        "accuracy_samples": len(held_out),
        "calibration_samples": len(calib_samples),
        "seconds": {
            "total": round(time.perf_counter() - started, 1),
            "optcli_stages": stage_seconds,
            "ort_byhand_quantize": round(ort_seconds, 1),
            "nncf_byhand_quantize": round(nncf_seconds, 1),
            "nncf_from_torch_quantize": round(from_torch_seconds, 1),
            "optcli_wall": round(sum(stage_seconds.values()), 1),
            "timing": round(timing_seconds, 1),
        },
    }
