"""ResNet-50 summary: batch-1 latency, speedup vs PyTorch eager, top-1 agreement and cosine per engine.

Reads the report.json of a run folder made by `optcli run recipes/resnet50.yaml`, or runs the recipe
itself first with --run. Prints one markdown table. Needs torchvision only with --run:

    python bench/resnet50.py                  # reads runs/resnet50/report.json
    python bench/resnet50.py path/to/run-folder
    python bench/resnet50.py --run            # runs recipes/resnet50.yaml into runs/resnet50 first
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RECIPE = ROOT / "recipes" / "resnet50.yaml"


def run(recipe_path: Path, out_dir: Path) -> dict[str, Any]:
    """Run the recipe end to end without terminal output and return the report as a dict."""
    from optcli.console import SilentUI
    from optcli.pipeline import run_recipe
    from optcli.recipe import load_recipe

    return run_recipe(load_recipe(recipe_path), out_dir, SilentUI()).to_dict()


def table(report: dict[str, Any], batch_size: int = 1) -> str:
    """Markdown table: one row per engine timed at `batch_size`, baseline first."""
    validation = report.get("validation") or {}
    accuracy = {e["engine"]: e["metrics"] for e in validation.get("engines", [])}
    baseline = (report.get("benchmark") or {}).get("baseline")
    rows = [
        "| engine | batch 1 p50 ms | speedup vs eager | top-1 agreement | cosine |",
        "|---|---:|---:|---:|---:|",
    ]
    for result in (report.get("benchmark") or {}).get("results", []):
        if result["batch_size"] != batch_size:
            continue
        engine = result["engine"]
        metrics = {"top1_agreement": 1.0, "cosine": 1.0} if engine == baseline else accuracy.get(engine, {})
        top1, cosine = metrics.get("top1_agreement"), metrics.get("cosine")
        rows.append(
            f"| {engine}{' (baseline)' if engine == baseline else ''} "
            f"| {result['latency_ms']['p50']:.1f} | {result['speedup']:.2f}x "
            f"| {'-' if top1 is None else f'{top1:.2%}'} | {'-' if cosine is None else f'{cosine:.4f}'} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", nargs="?", type=Path, default=Path("runs/resnet50"), help="Run folder.")
    parser.add_argument("--run", action="store_true", help="Run the recipe into run_dir first.")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="Recipe for --run.")
    args = parser.parse_args(argv)

    if args.run:
        report = run(args.recipe, args.run_dir)
    else:
        path = args.run_dir / "report.json"
        if not path.is_file():
            print(f"{path} not found: run `optcli run {args.recipe}` or pass --run", file=sys.stderr)
            return 2
        report = json.loads(path.read_text(encoding="utf-8"))
    if not (report.get("benchmark") or {}).get("results"):
        print(f"no benchmark results in the report (status: {report.get('status')})", file=sys.stderr)
        return 2
    print(table(report))
    failed = [g for g in report.get("gates", []) if not g["passed"]]
    if failed:
        print("\nFailed gates:")
    for gate in failed:
        value = "n/a" if gate["value"] is None else f"{gate['value']:.4g}"
        needs = gate.get("threshold_text", gate["threshold"])
        print(f"- {gate['name']} [{gate['engine']}]: {value}, needs {needs}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
