"""optcli's mixed-precision search vs nncf.quantize_with_accuracy_control on one model (the tests'
OutlierMLP, which per-tensor INT8 breaks), same calibration and tuning samples, same metric: the
worst per-sample cosine vs FP32 (gate >= 0.9), judged on OpenVINO (f32 hint) over held-out samples.

    .venv/bin/python bench/cpu/qwac.py
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def worst_cosine(run, batches, references) -> float:
    from optcli.metrics import OutputAccumulator

    acc = OutputAccumulator()
    for batch, ref in zip(batches, references):
        acc.update(ref, run(batch))
    return acc.result()["cosine_min"]


def ov_runner(model):
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda batch: np.asarray(compiled(batch)[compiled.outputs[0]])


def main() -> None:
    import nncf
    import onnx
    import torch
    from conftest import MODEL_FILE
    from helpers import resolver_for

    from optcli.export import export_onnx
    from optcli.quantization import QuantizationSettings, nncf_onnx
    from optcli.quantization.mixed_precision import keep_float, rank_layers, search
    from optcli.stages.recover import candidate_groups

    namespace: dict = {}
    exec(MODEL_FILE, namespace)  # the tests' own model file
    model = namespace["make_outlier_mlp"]()
    rng = np.random.default_rng(0)
    calib = [{"x": rng.standard_normal((8, 16)).astype(np.float32)} for _ in range(8)]
    tuning = [{"x": rng.standard_normal((16, 16)).astype(np.float32)} for _ in range(2)]
    held = [{"x": rng.standard_normal((32, 16)).astype(np.float32)} for _ in range(3)]
    with torch.inference_mode():
        ref = {id(b): model(torch.from_numpy(b["x"])).numpy() for b in tuning + held}
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        src = folder / "fp32.onnx"
        export_onnx(
            model,
            resolver_for(("x", ["batch", 16])),
            src,
            exporter="dynamo",
            opset=18,
            output_names=None,
            external_data=None,
        )
        settings = QuantizationSettings(calibration={"samples": 64, "method": "auto"})
        qdq = folder / "int8.onnx"
        nncf_onnx.quantize(src, qdq, settings, iter(calib), ["x"])
        judge = [ref[id(b)] for b in held]
        out["int8"] = {"held_out_cosine_min": worst_cosine(ov_runner(str(qdq)), held, judge)}

        # optcli: ranked groups, edited-graph trials on OpenVINO, greedy + prune.
        started = time.perf_counter()
        float_model, int8_model = onnx.load(str(src)), onnx.load(str(qdq))
        tune_refs = [ref[id(b)] for b in tuning]

        def evaluate(nodes: list[str]) -> float:
            path = folder / "trial.onnx"
            onnx.save(keep_float(int8_model, float_model, set(nodes)), path)
            return worst_cosine(ov_runner(str(path)), tuning, tune_refs) - 0.9

        layers = rank_layers(src, qdq, tuning[:1], ["x"], 30.0)
        result = search(
            candidate_groups(src, layers),
            evaluate,
            initial_margin=evaluate([]),
            max_trials=12,
            deadline=time.perf_counter() + 120,
        )
        path = folder / "mixed.onnx"
        onnx.save(keep_float(int8_model, float_model, set(result.kept_float)), path)
        out["optcli_search"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "trials": len(result.trials),
            "kept_float_nodes": result.kept_float,
            "held_out_cosine_min": worst_cosine(ov_runner(str(path)), held, judge),
        }

        # NNCF's accuracy control on the same ONNX model and tuning samples.
        started = time.perf_counter()

        def validate(candidate, items) -> tuple[float, list[float]]:
            """(worst cosine, per-sample cosines): per-sample values put NNCF in its metric mode (its
            NMSE ranking has no ONNX backend)."""
            import onnx

            from optcli.metrics import per_sample
            from optcli.ort_session import create_session

            with tempfile.TemporaryDirectory() as scratch:  # create_session takes a file, like every session
                onnx.save(candidate, Path(scratch) / "candidate.onnx")
                session = create_session(Path(scratch) / "candidate.onnx")
            cosines = []
            for item in items:  # NNCF hands subsets too: each item carries its own reference
                produced = session.run(None, {"x": item["x"]})[0].astype(np.float64)
                cosines += list(per_sample(item["ref"].astype(np.float64), produced)[0])
            return min(cosines), cosines

        with contextlib.redirect_stdout(io.StringIO()):
            controlled = nncf.quantize_with_accuracy_control(
                onnx.load(str(src)),
                calibration_dataset=nncf.Dataset([{"x": b["x"][i : i + 1]} for b in calib for i in range(8)]),
                validation_dataset=nncf.Dataset(
                    [
                        {"x": b["x"][i : i + 1], "ref": r[i : i + 1]}
                        for b, r in zip(tuning, tune_refs)
                        for i in range(16)
                    ]
                ),
                validation_fn=validate,
                max_drop=0.1,
                subset_size=64,
            )
        path = folder / "qwac.onnx"
        onnx.save(controlled, path)
        reverted = sum(n.op_type == "QuantizeLinear" for n in int8_model.graph.node) - sum(
            n.op_type == "QuantizeLinear" for n in controlled.graph.node
        )
        out["nncf_quantize_with_accuracy_control"] = {
            "seconds": round(time.perf_counter() - started, 2),
            "quantizers_removed": reverted,
            "held_out_cosine_min": worst_cosine(ov_runner(str(path)), held, judge),
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
