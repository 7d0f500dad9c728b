"""Sweep executors compared: an N-cell sweep of the tests' tiny recipe run serially (local, 1 worker),
on the local pool with 2 workers, and with Ray on a 2-node local cluster (1 CPU each).

Per-cell overhead = the seconds the driver waited for a cell (from handing it to the executor to its
result) minus the cell's own run time (the sum of its report's stage seconds); so it counts process
start, imports, Ray scheduling and returning the files. Each mode starts with an empty stage cache.

    .venv/bin/python bench/sweep.py                 # 8 cells, all three modes
    .venv/bin/python bench/sweep.py --cells 2 --modes serial,local   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import MODEL_FILE, tiny_recipe_text


def write_sweep(folder: Path, cells: int) -> Path:
    (folder / "models.py").write_text(MODEL_FILE)
    (folder / "recipe.yaml").write_text(tiny_recipe_text())
    variants = "\n".join(
        f"  - {{name: v{i}, set: ['validate.data={{type: synthetic, seed: {i + 1}}}']}}" for i in range(cells)
    )  # distinct validation data: every cell validates (export is cached after the first)
    text = (
        "name: bench\noutput: out\nset: [benchmark.iterations=20, benchmark.warmup=2]\n"
        f"models:\n  - {{recipe: recipe.yaml, name: tiny}}\nvariants:\n{variants}\n"
    )
    (folder / "sweep.yaml").write_text(text)
    return folder / "sweep.yaml"


def run_mode(mode: str, cells: int, root: Path, address: str | None) -> dict:
    folder = root / mode
    folder.mkdir()
    write_sweep(folder, cells)
    env = {**os.environ, "OPTCLI_CACHE_DIR": str(folder / "cache")}
    args = {"serial": ["--workers", "1"], "local": ["--workers", "2"], "ray": ["--ray-address", str(address)]}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "optcli", "sweep", "sweep.yaml", *args[mode]],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{mode}: optcli sweep exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    data = json.loads((folder / "out" / "sweep.json").read_text())
    own, overhead = [], []
    for cell in data["cells"]:
        report = json.loads((folder / "out" / "tiny" / cell["variant"] / "report.json").read_text())
        seconds = sum(stage["seconds"] for stage in report["stages"])
        own.append(seconds)
        overhead.append(cell["attempts"][-1]["driver_seconds"] - seconds)
    return {
        "mode": mode,
        "exit": proc.returncode,
        "wall_s": wall,
        "own_median_s": statistics.median(own),
        "overhead_median_s": statistics.median(overhead),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--modes", default="serial,local,ray")
    args = parser.parse_args()
    modes = args.modes.split(",")
    cluster = None
    if "ray" in modes:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="optcli-bench-sweep-") as tmp:
            for mode in modes:
                rows.append(run_mode(mode, args.cells, Path(tmp), cluster.address if cluster else None))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        if cluster is not None:
            cluster.shutdown()
    serial = next((r["wall_s"] for r in rows if r["mode"] == "serial"), None)
    print(f"\n{args.cells} cells, {os.cpu_count()} CPUs\n")
    print("| executor | exit | wall s | vs serial | median cell run s | median overhead s per cell |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{serial / r['wall_s']:.2f}x" if serial else "-"
        print(
            f"| {r['mode']} | {r['exit']} | {r['wall_s']:.1f} | {ratio} | {r['own_median_s']:.2f} "
            f"| {r['overhead_median_s']:.2f} |"
        )


if __name__ == "__main__":
    main()
