"""Per-layer quantization error: which layers damage the model's outputs most when quantized.

Two measurements on the same batches:

- ORT's qdq_loss_debug runs the FP32 and the Q/DQ model with every intermediate tensor exposed;
  each layer gets the SQNR of its output against the FP32 model (error accumulated so far), the
  noise it adds over its worst input and its weights' SQNR. (ORT's own per-tensor "qdq_err" is not
  used: when the quantizer folds a ReLU into an unsigned Q/DQ pair, that pair's "noise" is the ReLU.)
- A one-at-a-time sensitivity sweep, which ranks: the FP32 model gets a switchable copy of every
  Q/DQ pair the quantized model has (same scales), and each layer's pairs (its output, its weights,
  the graph inputs it reads) are switched on alone; the ranking key is the noise that adds at the
  model's outputs. Per-tensor SQNR cannot rank: a channel ~1000x larger than the rest holds nearly
  all the signal power, so a tensor whose other channels one per-tensor scale flattens still reads
  well (the tests' OutlierMLP: `mid`'s output 42.6 dB, "adds no noise", yet quantizing it alone
  drops the model's output to 2.2 dB; ranked last, recovery needed 3 trials instead of 1).

Cost of the sweep, measured on 2 shared CPU cores with 2 batches of 64: one session, then per
layer one pass over the batches with graph optimization off, 1.3-2.8x an optimized FP32 pass.
OutlierMLP (3 layers): 0.03 s. A 35-layer residual CNN (18 convs, 3x32x32): 42-93 s (1.2-2.7 s a
layer), against 8-19 s for the qdq_loss_debug part. `time_budget_s` (default 300 s) bounds it;
layers it did not reach keep output_noise None and are ranked after the measured ones.
Activations of every batch are held in memory (ORT's API), so diagnosis uses a few batches.
"""

from __future__ import annotations

import contextlib
import io
import math
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from optcli.calibration import Batch
from optcli.quantization.selectors import module_path
from optcli.quantization.sensitivity import Sweep, float_name

SWEEP_BUDGET_S = 300.0  # a ResNet-50 on 2 CPU cores: an estimated 5-15 s a layer, so rank what fits


@dataclass
class LayerError:
    node: str
    op_type: str
    module: str
    output: str
    sqnr_db: float  # the Q/DQ model's output vs the FP32 model's: error accumulated up to here
    added_noise: float  # relative noise power this node adds over its worst input's
    weight_sqnr_db: float | None = None
    # The ranking key: relative noise power at the model's outputs with only this layer quantized
    # (None: the sweep's time budget ran out first), and the same as an SQNR.
    output_noise: float | None = None
    model_sqnr_db: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _reader(batches: list[Batch], input_names: list[str]):
    from onnxruntime.quantization import CalibrationDataReader

    class Replay(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{n: b[n] for n in input_names} for b in batches])

        def get_next(self) -> dict | None:
            return next(self.items, None)

    return Replay()


def diagnose(
    float_model: Path,
    qdq_model: Path,
    batches: Iterable[Batch],
    input_names: list[str],
    *,
    time_budget_s: float | None = SWEEP_BUDGET_S,
) -> list[LayerError]:
    """Layers ranked worst first: by the damage quantizing each alone does to the model's outputs."""
    from onnxruntime.quantization import qdq_loss_debug as debug

    kept = list(batches)
    with tempfile.TemporaryDirectory(dir=qdq_model.parent) as tmp, contextlib.redirect_stdout(io.StringIO()):
        activations = {}
        for label, path in (("float", float_model), ("qdq", qdq_model)):
            augmented = Path(tmp) / f"{label}-augmented.onnx"
            debug.modify_model_output_intermediate_tensors(str(path), str(augmented))
            activations[label] = debug.collect_activations(str(augmented), _reader(kept, input_names))
        matching = debug.create_activation_matching(activations["qdq"], activations["float"])
        errors = debug.compute_activation_error(matching)
        weights = debug.compute_weight_error(debug.create_weight_matching(str(float_model), str(qdq_model)))
        del activations, matching
        qdq = onnx.load(str(qdq_model))  # with its weights: the sweep copies the quantized ones
        layers = _rank(qdq, errors, weights)
        sweep = Sweep(onnx.load(str(float_model)), qdq, Path(tmp))
        deadline = None if time_budget_s is None else time.perf_counter() + time_budget_s
        sweep.measure(layers, kept, input_names, deadline)
    layers.sort(key=_severity, reverse=True)
    return layers


def _severity(layer: LayerError) -> tuple[bool, float, float]:
    """Swept layers first, by output damage (NaN: non-finite outputs, the worst); then by added noise."""
    noise = layer.output_noise
    measured = noise is not None
    return measured, (math.inf if measured and math.isnan(noise) else noise or 0.0), layer.added_noise


def _rank(
    model: onnx.ModelProto, errors: dict[str, dict[str, float]], weights: dict[str, float]
) -> list[LayerError]:
    sqnr = {name: e["xmodel_err"] for name, e in errors.items() if "xmodel_err" in e}
    original = _dequantized_sources(model)
    layers = []
    for node in model.graph.node:
        output = float_name(node.output[0]) if node.output else ""
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or output not in sqnr:
            continue
        inputs = [original.get(name, name) for name in node.input]
        noise_in = max((_noise(sqnr[t]) for t in inputs if t in sqnr), default=0.0)
        weight = [weights[t] for t in inputs if t in weights]
        layers.append(
            LayerError(
                node=node.name,
                op_type=node.op_type,
                module=module_path(node),
                output=output,
                sqnr_db=round(float(sqnr[output]), 3),
                added_noise=float(max(_noise(sqnr[output]) - noise_in, 0.0)),
                weight_sqnr_db=round(float(min(weight)), 3) if weight else None,
            )
        )
    return layers


def _dequantized_sources(model: onnx.ModelProto) -> dict[str, str]:
    """DequantizeLinear output -> the FP32 model's tensor (through its QuantizeLinear, if any)."""
    quantized_from = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    return {
        n.output[0]: float_name(quantized_from.get(n.input[0], n.input[0]))
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
    }


def _noise(sqnr_db: float) -> float:
    """Noise power relative to signal power."""
    return float(10 ** (-sqnr_db / 10))
