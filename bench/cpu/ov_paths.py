"""Where OpenVINO INT8 time goes: optcli's NNCF-on-ONNX Q/DQ artifact vs NNCF on OpenVINO's own model
(read from the exported ONNX, or `ov.convert_model` of the PyTorch model), with the f32 and the
default inference-precision hint, at 1 and 2 threads, timed interleaved (small counts).

    .venv-vision/bin/python bench/cpu/ov_paths.py --models mobilenetv3,resnet50 --threads 1,2

Prints one JSON line per (model, threads, path): p50 ms per round, median, worst per-sample cosine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))


def _model(name: str):
    from optcli.examples import vision

    return {"mobilenetv3": vision.mobilenet_v3_large, "resnet50": vision.resnet50}[name]()


def _samples(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(n)]


def quantized_models(name: str, folder: Path, calib: list[np.ndarray]) -> dict[str, object]:
    """path label -> an ov.Model or a file OpenVINO reads."""
    import nncf
    import openvino as ov
    import torch

    from optcli.export import export_onnx
    from optcli.quantization import QuantizationSettings, nncf_onnx
    from optcli.specs import DimRange, InputSpec, ShapeResolver

    model = _model(name)
    resolver = ShapeResolver(
        [InputSpec(name="x", shape=["batch", 3, 224, 224])], {"batch": DimRange(min=1, opt=1, max=8)}, "batch"
    )
    onnx_path = folder / "exported.onnx"
    export_onnx(
        model, resolver, onnx_path, exporter="dynamo", opset=18, output_names=["logits"], external_data=None
    )
    qdq = folder / "nncf-qdq.onnx"
    settings = QuantizationSettings(per_channel=True, calibration={"samples": len(calib), "method": "auto"})
    nncf_onnx.quantize(onnx_path, qdq, settings, iter([{"x": x} for x in calib]), ["x"])
    dataset = nncf.Dataset([{"x": x} for x in calib])
    with contextlib.redirect_stdout(io.StringIO()):
        from_onnx = nncf.quantize(ov.Core().read_model(str(onnx_path)), dataset, subset_size=len(calib))
        converted = ov.convert_model(model, example_input=torch.from_numpy(calib[0]))
        from_torch = nncf.quantize(converted, nncf.Dataset([x for x in calib]), subset_size=len(calib))
    return {
        "optcli-nncf-onnx-qdq": str(qdq),
        "nncf-on-ov-read-onnx": from_onnx,
        "nncf-on-ov-convert-torch": from_torch,
        "_torch": model,
    }


def main() -> None:
    import openvino as ov
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="mobilenetv3,resnet50")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    core = ov.Core()
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            models = quantized_models(name, Path(tmp), _samples(32, 0))
            torch_model = models.pop("_torch")
            held = _samples(8, 1000003)
            with torch.inference_mode():
                refs = [torch_model(torch.from_numpy(x)).numpy() for x in held]
            for threads in map(int, args.threads.split(",")):
                engines = {}
                for label, model in models.items():
                    for hint in ("f32", "auto"):
                        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
                        if hint != "auto":
                            config["INFERENCE_PRECISION_HINT"] = hint
                        compiled = core.compile_model(model, "CPU", config)
                        used = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
                        request = compiled.create_infer_request()
                        cos = []
                        for x, ref in zip(held, refs):
                            out = np.asarray(request.infer({0: x})[compiled.outputs[0]]).ravel()
                            cos.append(float(out @ ref.ravel() / np.linalg.norm(out) / np.linalg.norm(ref)))
                        request.set_tensor(compiled.inputs[0], ov.Tensor(held[0], shared_memory=True))
                        engines[f"{label}/{hint}({used})"] = (request, min(cos))
                rounds: dict[str, list[float]] = {k: [] for k in engines}
                for r in range(args.rounds):
                    order = list(engines)[r % len(engines) :] + list(engines)[: r % len(engines)]
                    for key in order:
                        request = engines[key][0]
                        request.infer(share_outputs=True)
                        t = []
                        for _ in range(args.iters):
                            s = time.perf_counter()
                            request.infer(share_outputs=True)
                            t.append(time.perf_counter() - s)
                        rounds[key].append(round(statistics.median(t) * 1000, 3))
                for key, p50s in rounds.items():
                    print(
                        json.dumps(
                            {
                                "model": name,
                                "threads": threads,
                                "path": key,
                                "p50_ms": statistics.median(p50s),
                                "rounds": p50s,
                                "worst_cosine": round(engines[key][1], 5),
                            }
                        ),
                        flush=True,
                    )


if __name__ == "__main__":
    main()
