"""The recsys example's done-when numbers: AUC, log loss, calibration and model size with row-wise INT8
and 4-bit embedding tables (INT8 MLPs both times), and the throughput each engine reaches at
p99 <= 10 ms (benchmark.mode slo: batch and thread search on real validation samples).

    python bench/recsys.py                          # the full model (26 tables, 394 MB FP32)
    python bench/recsys.py --variant small --max-batch 512   # a quick check of the script
    options: --out DIR --p99-ms 10 --threads 1 2 --json results.json

Runs `optcli run recipes/recsys.yaml` twice, with the recipe's SLO benchmark: 8-bit tables (PyTorch
eager FP32, ORT FP32, ORT INT8), then 4-bit tables (ORT INT8 only; its ratio is against the PyTorch
baseline searched in that run). Prints one markdown table.
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


def recipe_for(variant: str, bits: int, out: Path, slo: dict[str, Any]) -> Path:
    """recipes/recsys.yaml for `variant` and table bits (the small variant: 4 dense, 3 tables), with
    `slo` changes to its benchmark.slo; the 4-bit run builds the INT8 engine only."""
    recipe = yaml.safe_load((ROOT / "recipes" / "recsys.yaml").read_text())
    recipe["quantization"]["embeddings"]["bits"] = bits
    recipe["benchmark"]["slo"].update(slo)
    if bits != 8:
        recipe["build"] = [entry for entry in recipe["build"] if entry["artifact"] == "quantized"]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["full", "small"], default="full")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-recsys")
    parser.add_argument("--p99-ms", type=float, default=10.0)
    parser.add_argument("--max-batch", type=int, default=4096)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    slo = {"p99_ms": args.p99_ms, "max_batch": args.max_batch, "threads": args.threads}
    reports = {}
    for bits in (8, 4):
        recipe = recipe_for(args.variant, bits, args.out, slo)
        reports[bits] = run_recipe(recipe, args.out / f"tables-{bits}bit")
    results = []
    for bits, report in reports.items():
        slo_results = report["benchmark"]["slo"]["results"]
        for r in slo_results if bits == 8 else slo_results[1:]:  # [0]: the baseline, searched again
            quantized = r["engine"] == "ort-int8"
            results.append({**r, "engine": r["engine"] + (f" ({bits}-bit tables)" if quantized else "")})
    print(table(reports, results, args.p99_ms))
    if args.json:
        data = {"reports": {b: _summary(r) for b, r in reports.items()}, "slo": results}
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
        p99 = f"{r['p99_ms']:.2f}" if r["p99_ms"] is not None else "-"
        speedup = f"{r['speedup']:.2f}x" if r["speedup"] is not None else "-"
        cells = [r["engine"], r["batch_size"], r["threads"], p99, f"{r['throughput']:.0f}", speedup]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
