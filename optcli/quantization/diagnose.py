"""Per-layer quantization error: which quantized tensors and weights lose the most signal.

Built on onnxruntime.quantization.qdq_loss_debug: the FP32 and the Q/DQ model run on the same
batches with every intermediate tensor exposed. Each compute node is scored by the SQNR of its
output against the FP32 model (error accumulated so far) and ranked by the noise it adds: the
relative noise power at its output minus that at its worst input. (ORT's own per-tensor
"qdq_err" is not used for ranking: when the quantizer folds a ReLU into an unsigned Q/DQ pair,
that pair's "noise" is the ReLU itself.) Activations of every batch are held in memory (ORT's
API), so diagnosis uses a few batches.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from optcli.calibration import Batch
from optcli.quantization.selectors import module_path


@dataclass
class LayerError:
    node: str
    op_type: str
    module: str
    output: str
    sqnr_db: float  # the Q/DQ model's output vs the FP32 model's: error accumulated up to here
    added_noise: float  # relative noise power this node adds over its worst input's
    weight_sqnr_db: float | None = None

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
    float_model: Path, qdq_model: Path, batches: Iterable[Batch], input_names: list[str]
) -> list[LayerError]:
    """Quantized tensors ranked worst first (lowest SQNR of their own Q/DQ)."""
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
    return _rank(onnx.load(str(qdq_model), load_external_data=False), errors, weights)


def _rank(
    model: onnx.ModelProto, errors: dict[str, dict[str, float]], weights: dict[str, float]
) -> list[LayerError]:
    sqnr = {name: e["xmodel_err"] for name, e in errors.items() if "xmodel_err" in e}
    quantized_from = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    # DequantizeLinear output -> the FP32 model's tensor (through its QuantizeLinear, if any).
    original = {
        n.output[0]: _float_name(quantized_from.get(n.input[0], n.input[0]))
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
    }
    layers = []
    for node in model.graph.node:
        output = _float_name(node.output[0]) if node.output else ""
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
    layers.sort(key=lambda layer: layer.added_noise, reverse=True)
    return layers


def _noise(sqnr_db: float) -> float:
    """Noise power relative to signal power."""
    return float(10 ** (-sqnr_db / 10))


def _float_name(name: str) -> str:
    """ORT's Q/DQ naming back to the FP32 tensor: 'w_quantized' -> 'w', 'y_QuantizeLinear_Input' -> 'y'."""
    for suffix in ("_QuantizeLinear_Input", "_quantized"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
