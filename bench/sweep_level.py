"""Seconds per pass of the one-at-a-time sensitivity sweep (quantization/sensitivity.py) at each ONNX
Runtime optimization level, and whether the ranking it gives changes, on a run folder's float and
INT8 models. Interleaved rounds, so drift hits every level alike.

    .venv-vision/bin/python bench/sweep_level.py runs/resnet50 --int8 quantized-nncf.onnx --layers 12

Prints, per level: median seconds per pass (min-max over rounds) over `--samples` random N(0,1)
inputs, and the Spearman correlation of its per-layer output noise with level `disabled`'s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a run folder holding exported.onnx and the INT8 model")
    parser.add_argument("--int8", default="quantized-nncf.onnx")
    parser.add_argument("--layers", type=int, default=12, help="layers measured per level and round")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--levels", default="disabled,basic,all")
    args = parser.parse_args()

    from optcli.ort_session import create_session
    from optcli.quantization.sensitivity import Sweep, _relative_noise

    float_model = onnx.load(str(args.run / "exported.onnx"))
    qdq = onnx.load(str(args.run / args.int8))
    name = float_model.graph.input[0].name
    dims = [d.dim_value or 1 for d in float_model.graph.input[0].type.tensor_type.shape.dim]
    feed = {name: np.random.default_rng(0).normal(size=[args.samples, *dims[1:]]).astype(np.float32)}
    levels = args.levels.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Sweep(float_model, qdq, Path(tmp))
        path = sweep.folder / "sweep.onnx"
        from optcli.onnx_io import save_model

        save_model(sweep.model, path)
        sessions = {level: create_session(path, level=level) for level in levels}
        switches = list(sweep.switches.values())[: args.layers]
        off = {s: np.array(False) for s in sweep.switches.values()}
        seconds: dict[str, list[float]] = {level: [] for level in levels}
        noise: dict[str, list[float]] = {level: [] for level in levels}
        for round_ in range(args.rounds):
            for level in levels:
                session = sessions[level]
                reference = session.run(None, {**feed, **off})
                started = time.perf_counter()
                values = []
                for switch in switches:
                    outputs = session.run(None, {**feed, **off, switch: np.array(True)})
                    values.append(_relative_noise([reference], [outputs]))
                seconds[level].append((time.perf_counter() - started) / len(switches))
                if round_ == 0:
                    noise[level] = values
    base = np.argsort(np.argsort(noise[levels[0]]))
    spread = f"median (min-max of {args.rounds})"
    print(f"| level | s per pass ({args.samples} samples), {spread} | Spearman vs {levels[0]} |")
    print("|---|---:|---:|")
    for level in levels:
        ranks = np.argsort(np.argsort(noise[level]))
        rho = float(np.corrcoef(base, ranks)[0, 1])
        times = seconds[level]
        print(f"| {level} | {statistics.median(times):.3f} ({min(times):.3f}-{max(times):.3f}) | {rho:.4f} |")


if __name__ == "__main__":
    main()
