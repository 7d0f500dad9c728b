"""How much of a run the stage cache saves: cold run, gate-only rerun, calibration-method rerun,
and a rerun after deleting one cached file, each a separate `optcli run` process, timed whole.

    .venv-vision/bin/python bench/rerun_cache.py                    # ResNet-50 (needs torchvision)
    .venv/bin/python bench/rerun_cache.py --recipe recipes/example.yaml

The benchmark stage is off in every run (it reruns by design: timings are never cached), so the
times compare the stages the cache can skip. Prints one row per run: wall seconds, the share of
the cold run, and which stages came from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def optcli(recipe: Path, out: Path, cache: Path, *overrides: str) -> tuple[float, dict]:
    args = [sys.executable, "-m", "optcli", "run", str(recipe), "--out", str(out), "-q"]
    args += [a for o in ("benchmark.enabled=false", *overrides) for a in ("--set", o)]
    env = {**os.environ, "OPTCLI_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if result.returncode not in (0, 1):
        raise SystemExit(f"optcli exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return seconds, json.loads((out / "report.json").read_text())


def cached_stages(report: dict) -> str:
    parts = []
    for stage in report["stages"]:
        cached = stage["details"].get("cached")
        parts.append(f"{stage['name']}{'*' if cached else ''}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "resnet50.yaml")
    parser.add_argument("--gate", default="validate.gates.cosine='>= 0.991'", help="the gate-only change")
    parser.add_argument("--method", default="minmax", help="calibration method for the method rerun")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="optcli-rerun-") as tmp:
        cache, out = Path(tmp) / "cache", Path(tmp) / "run"
        rows = []
        cold, report = optcli(args.recipe, out, cache)
        rows.append(("cold (empty cache)", cold, report))
        rows.append(("only a gate changed", *optcli(args.recipe, out, cache, args.gate)))
        method = f"quantization.calibration.method={args.method}"
        rows.append(("calibration method changed", *optcli(args.recipe, out, cache, method)))
        key = next(
            s["details"]["cache_key"] for s in rows[-1][2]["stages"] if s["name"].startswith("quantize")
        )
        (cache / "quantize" / key / "quantized.onnx").unlink()  # the entry the next run would read
        rows.append(("a cached quantized.onnx deleted", *optcli(args.recipe, out, cache, method)))
    print(f"recipe: {args.recipe.name}; * = stage result read from the cache; benchmark off in every run")
    print(f"{'run':34} {'wall s':>7} {'vs cold':>8}  stages")
    for name, seconds, report in rows:
        print(
            f"{name:34} {seconds:7.1f} {seconds / cold:8.1%}  {cached_stages(report)}  [{report['verdict']}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
