"""The recsys example's done-when numbers: AUC, log loss, calibration and model size with row-wise INT8
and 4-bit embedding tables (INT8 MLPs both times), and the throughput each engine reaches at
p99 <= 10 ms (optcli.slo: batch and thread search on real validation samples).

    python bench/recsys.py                          # the full model (26 tables, 394 MB FP32)
    python bench/recsys.py --variant small --max-batch 512   # a quick check of the script
    options: --out DIR --p99-ms 10 --threads 1 2 --json results.json

Runs `optcli run recipes/recsys.yaml` twice (bits 8 and 4, benchmark off), then times PyTorch
eager FP32, ORT FP32 and both INT8 artifacts with the SLO search. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def recipe_for(variant: str, bits: int, out: Path) -> Path:
    """recipes/recsys.yaml for `variant` and table bits (the small variant: 4 dense, 3 tables)."""
    recipe = yaml.safe_load((ROOT / "recipes" / "recsys.yaml").read_text())
    recipe["quantization"]["embeddings"]["bits"] = bits
    recipe["benchmark"] = {"enabled": False}
    if variant == "small":
        recipe["model"]["inputs"] = [
            {"name": "dense", "shape": ["batch", 4], "dtype": "float32"},
            {"name": "sparse", "shape": ["batch", 3], "dtype": "int64"},
        ]
        for section in (recipe["quantization"]["calibration"], recipe["validate"]):
            section["data"]["kwargs"]["variant_name"] = "small"
        recipe["model"]["kwargs"]["variant_name"] = "small"
    path = out / f"recsys-{variant}-{bits}bit.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run_recipe(recipe: Path, out: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "optcli", "run", str(recipe), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(
            f"optcli run {recipe} exited {proc.returncode}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    report = json.loads((out / "report.json").read_text())
    report["exit_code"] = proc.returncode
    return report


def engines(variant: str, runs: dict[int, Path]):
    """label -> engine_for(threads): PyTorch eager FP32, ORT FP32, ORT INT8 with 8/4-bit tables."""
    from optcli.backends import EngineContext, create_engine
    from optcli.backends.onnxruntime import OnnxRuntimeConfig
    from optcli.backends.torch_engine import TorchConfig
    from optcli.examples.recsys import load_model

    model = load_model(variant)

    def context(path: Path) -> EngineContext:
        return EngineContext(
            artifacts={"exported": str(runs[8] / "exported.onnx"), "quantized": str(path)},
            precisions={"exported": "fp32", "quantized": "int8"},
            torch_model=lambda: model,
            input_names=["dense", "sparse"],
            output_names=["ctr"],
        )

    configs = {
        "pytorch-eager-fp32": (lambda t: TorchConfig(threads=t), runs[8]),
        "ort-fp32": (lambda t: OnnxRuntimeConfig(artifact="exported", threads=t), runs[8]),
        "ort-int8 (8-bit tables)": (lambda t: OnnxRuntimeConfig(artifact="quantized", threads=t), runs[8]),
        "ort-int8 (4-bit tables)": (lambda t: OnnxRuntimeConfig(artifact="quantized", threads=t), runs[4]),
    }
    opened: list[Any] = []

    def factory(make, run: Path):
        def engine_for(threads):
            for engine in opened:  # one engine at a time holds its memory
                engine.close()
            opened.clear()
            opened.append(create_engine(make(threads), context(run / "quantized.onnx")).load())
            return opened[0]

        return engine_for

    return {label: factory(make, run) for label, (make, run) in configs.items()}, opened


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["full", "small"], default="full")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-recsys")
    parser.add_argument("--p99-ms", type=float, default=10.0)
    parser.add_argument("--max-batch", type=int, default=4096)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from optcli.examples.recsys import validation_batches
    from optcli.slo import SloSettings, feeds_of, sample_pool, search, with_speedups

    args.out.mkdir(parents=True, exist_ok=True)
    runs, reports = {}, {}
    for bits in (8, 4):
        runs[bits] = args.out / f"tables-{bits}bit"
        reports[bits] = run_recipe(recipe_for(args.variant, bits, args.out), runs[bits])
    pool = sample_pool(
        validation_batches(args.variant, samples=args.max_batch), ["dense", "sparse"], args.max_batch
    )
    settings = SloSettings(p99_ms=args.p99_ms, max_batch=args.max_batch, threads=args.threads)
    factories, opened = engines(args.variant, runs)
    results = []
    for label, engine_for in factories.items():
        results.append(search(label, engine_for, feeds_of(pool), settings))
        print(
            f"{label}: batch {results[-1].batch_size}, {results[-1].throughput:.0f} samples/s",
            file=sys.stderr,
        )
    for engine in opened:
        engine.close()
    with_speedups(results, "pytorch-eager-fp32")
    print(table(reports, results, args.p99_ms))
    if args.json:
        data = {
            "reports": {b: _summary(r) for b, r in reports.items()},
            "slo": [r.to_dict() for r in results],
        }
        args.json.write_text(json.dumps(data, indent=2, default=str))


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    engine = report["validation"]["engines"][-1]
    tables = report["quantization"]["embeddings"]
    return {
        "exit_code": report["exit_code"],
        "metrics": {
            k: engine["metrics"].get(k) for k in ("auc", "auc_drop", "logloss_increase", "calibration")
        },
        "baseline": engine["baseline_metrics"],
        "model_bytes": tables["model_bytes"],
        "table_bytes": tables["table_bytes"],
        "gates": [(g["name"], g["engine"], g["value"], g["status"]) for g in report["gates"]],
    }


def table(reports: dict[int, dict], results, p99_ms: float) -> str:
    lines = [
        "| tables | AUC | AUC drop | log loss increase | calibration | model MB (ratio) | gates |",
        "|---|---|---|---|---|---|---|",
    ]
    base = _summary(reports[8])["baseline"]
    lines.append(f"| FP32 (PyTorch) | {base['auc']:.4f} | - | - | {base['calibration']:.4f} | - | - |")
    for bits, report in reports.items():
        s = _summary(report)
        m, size = s["metrics"], s["model_bytes"]
        verdict = "pass" if s["exit_code"] == 0 else "FAIL"
        lines.append(
            f"| INT8 MLPs + {bits}-bit rows | {m['auc']:.4f} | {m['auc_drop']:.5f} "
            f"| {m['logloss_increase']:.5f} | {m['calibration']:.4f} "
            f"| {size['before'] / 1e6:.1f} -> {size['after'] / 1e6:.1f} "
            f"({size['ratio']:.3f}x) | {verdict} |"
        )
    lines += [
        "",
        f"| engine | batch at p99 <= {p99_ms:g} ms | threads | p99 ms | samples/s | vs PyTorch |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        p99 = f"{r.p99_ms:.2f}" if r.p99_ms is not None else "-"
        speedup = f"{r.speedup:.2f}x" if r.speedup is not None else "-"
        lines.append(
            f"| {r.engine} | {r.batch_size} | {r.threads} | {p99} | {r.throughput:.0f} | {speedup} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
