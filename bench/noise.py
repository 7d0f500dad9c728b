"""How much the speedup of the example recipe moves between runs while another process loads a core.

    python bench/noise.py                     # 5 interleaved runs, then 5 sequential ones
    options: --runs 5 --recipe recipes/example.yaml --engine ort-int8 --no-load --json out.json
             --set benchmark.threads=1 (any recipe override, repeatable)

Each run is a separate `optcli run` process (the stage cache makes every stage but the benchmark a
cache hit after the first). While they run, a busy-loop process keeps one CPU core loaded. For each
method (`benchmark.method=interleaved`, then `sequential`: each engine timed after the other) it
prints the engine's speedup per batch size with its 95% interval, the gate status and the verdict of
every run, and the spread: the largest distance of a run's speedup from the median, in percent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OPTCLI = [sys.executable, "-m", "optcli"]
BATCH_IN_DETAIL = re.compile(r"batch size (\d+)")  # benchmark gates name their batch size in `detail`


@contextmanager
def busy_core(enabled: bool):
    """A child process spinning on one core (core 0 where affinity can be set) until the block ends."""
    if not enabled:
        yield None
        return
    pin = (lambda: os.sched_setaffinity(0, {0})) if hasattr(os, "sched_setaffinity") else None
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=pin)
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def one_run(recipe: Path, out: Path, method: str, overrides: list[str]) -> dict[str, Any]:
    sets = [arg for value in [*overrides, f"benchmark.method={method}"] for arg in ("--set", value)]
    cmd = [*OPTCLI, "run", str(recipe), "--out", str(out), "--quiet", *sets]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    report_file = out / "report.json"
    if not report_file.exists():
        raise SystemExit(f"optcli run exited {done.returncode} without a report:\n{done.stderr}")
    report = json.loads(report_file.read_text())
    return {"exit_code": done.returncode, "verdict": report.get("verdict"), "report": report}


def cells(run: dict[str, Any], engine: str) -> dict[int, dict[str, Any]]:
    """Batch size -> speedup, its interval and the speedup gate's status, for one engine."""
    report = run["report"]
    gates = {
        int(match.group(1)): g["status"]
        for g in report["gates"]
        if g["engine"] == engine
        and g["name"] == "benchmark.speedup"
        and (match := BATCH_IN_DETAIL.search(g.get("detail", "")))
    }
    base = {
        r["batch_size"]: r
        for r in report["benchmark"]["results"]
        if r["engine"] == report["benchmark"]["baseline"]
    }
    return {
        r["batch_size"]: {
            "p50_ms": r["latency_ms"]["p50"],
            "baseline_p50_ms": base[r["batch_size"]]["latency_ms"]["p50"],
            "speedup": r["speedup"],
            "ci": r.get("speedup_ci"),
            "gate": gates.get(r["batch_size"], "-"),
            "noisy": r.get("noisy"),
        }
        for r in report["benchmark"]["results"]
        if r["engine"] == engine
    }


def spread_pct(values: list[float]) -> float:
    median = statistics.median(values)
    return 100.0 * max(abs(v - median) for v in values) / median


def summarize(method: str, engine: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_run = [cells(run, engine) for run in runs]
    sizes = sorted(per_run[0]) if per_run else []
    print(f"\n## method: {method} ({len(runs)} runs, {engine} speedup vs the baseline)\n")
    print("| run | " + " | ".join(f"batch {bs}: speedup [95%], gate" for bs in sizes) + " | verdict | exit |")
    print("|---|" + "---|" * (len(sizes) + 2))
    for i, (run, cell) in enumerate(zip(runs, per_run), 1):
        parts = []
        for bs in sizes:
            c = cell[bs]
            ci = f" [{c['ci'][0]:.2f}, {c['ci'][1]:.2f}]" if c["ci"] else ""
            parts.append(f"{c['speedup']:.2f}x{ci}, {c['gate']}" + (" (noisy)" if c["noisy"] else ""))
        print(f"| {i} | " + " | ".join(parts) + f" | {run['verdict']} | {run['exit_code']} |")
    summary: dict[str, Any] = {"method": method, "runs": [], "batch_sizes": {}}
    for bs in sizes:
        values = [cell[bs]["speedup"] for cell in per_run]
        statuses = sorted({cell[bs]["gate"] for cell in per_run})
        summary["batch_sizes"][bs] = {
            "speedups": values,
            "median": statistics.median(values),
            "spread_pct": spread_pct(values),
            "gate_statuses": statuses,
        }
        print(
            f"\nbatch {bs}: median {statistics.median(values):.2f}x, spread +-{spread_pct(values):.1f}% "
            f"around the median; gate status(es): {', '.join(statuses)}"
            + (" (FLIPS between runs)" if len(statuses) > 1 else "")
        )
    verdicts = sorted({run["verdict"] for run in runs})
    print(f"verdicts: {', '.join(verdicts)}" + (" (FLIPS between runs)" if len(verdicts) > 1 else ""))
    summary["runs"] = [
        {"verdict": r["verdict"], "exit_code": r["exit_code"], "cells": c} for r, c in zip(runs, per_run)
    ]
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "example.yaml")
    parser.add_argument("--engine", default="ort-int8", help="The engine whose speedup is followed.")
    parser.add_argument("--methods", default="interleaved,sequential")
    parser.add_argument("--no-load", action="store_true", help="Do not load a core while measuring.")
    parser.add_argument("--set", action="append", default=[], help="Recipe override for every run.")
    parser.add_argument("--json", type=Path, help="Also write the summary here.")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="optcli-noise-") as tmp, busy_core(not args.no_load) as pid:
        load = f"busy-loop process {pid} on one core" if pid else "none"
        print(f"load: {load}; recipe {args.recipe}")
        for method in args.methods.split(","):
            runs = []
            for i in range(args.runs):
                runs.append(one_run(args.recipe.resolve(), Path(tmp) / f"{method}-{i}", method, args.set))
                print(f"  {method} run {i + 1}/{args.runs}: verdict {runs[-1]['verdict']}", file=sys.stderr)
            results.append(summarize(method, args.engine, runs))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
