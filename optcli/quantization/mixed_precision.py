"""Mixed precision for one engine: the fewest layers of an INT8 Q/DQ model to keep in floating point
so that the validate gates hold.

Trials are cheap graph edits of the quantized model, not re-quantizations: `keep_float` re-wires the
chosen nodes to read their float inputs (the activation before its QuantizeLinear, the weight from
the float model), so a trial costs one engine compile and one pass over the tuning samples.
Candidates come ranked by the diagnosis (the noise each layer adds at the model's outputs, see
diagnose.py); the greedy loop is recovery.recover's (a group is kept only when it improves the
margin), then a prune pass drops every kept group the gates do not need. The caller re-quantizes
the final set with the quantizer's own exclusions (NNCF ignored scope, ORT nodes_to_exclude).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optcli.gates import VALIDATION_METRICS, Threshold, engine_gates
from optcli.quantization.recovery import recover

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from optcli.quantization.diagnose import LayerError
    from optcli.validate import EngineValidation

_FLOAT_SUFFIX = "_optcli_float"


def keep_float(qdq: onnx.ModelProto, float_model: onnx.ModelProto, nodes: set[str]) -> onnx.ModelProto:
    """A copy of `qdq` where every node in `nodes` reads floating-point inputs: DQ(Q(x)) -> x, and its
    constants (weights, biases) -> the float model's tensors at the same inputs of the same-named node
    (dequantized weights when the float model has no such node). Unread Q/DQ nodes are dropped."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    inits = {i.name: i for i in graph.initializer}
    float_nodes = {n.name: n for n in float_model.graph.node}
    float_inits = {i.name: i for i in float_model.graph.initializer}
    taken = {*inits, *producers, *(i.name for i in graph.input)}
    for node in graph.node:
        if node.name not in nodes or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        twin = float_nodes.get(node.name)
        for index, name in enumerate(node.input):
            original = twin.input[index] if twin is not None and index < len(twin.input) else None
            dq = producers.get(name)
            dequantized = dq is not None and dq.op_type == "DequantizeLinear"
            source = producers.get(dq.input[0]) if dequantized else None
            if source is not None and source.op_type == "QuantizeLinear":
                node.input[index] = source.input[0]  # an activation: read it before its Q/DQ
                continue
            if original in float_inits:
                # A constant (weight, or a bias the quantizer corrected for the weights' rounding):
                # the float model's own values.
                if name in inits and inits[name] == float_inits[original]:
                    continue
                tensor = onnx.TensorProto()
                tensor.CopyFrom(float_inits[original])
            elif dequantized and dq.input[0] in inits:
                tensor = numpy_helper.from_array(_dequantize(dq, inits, numpy_helper), name)
            else:
                continue
            if tensor.name in taken:
                tensor.name += _FLOAT_SUFFIX
            if tensor.name not in inits:
                graph.initializer.append(tensor)
                inits[tensor.name] = tensor
                taken.add(tensor.name)
            node.input[index] = tensor.name
    _drop_unread(model)
    return model


def _dequantize(dq: onnx.NodeProto, inits: dict, numpy_helper) -> np.ndarray:
    import numpy as np

    values = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
    zero = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 else 0.0
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if np.ndim(scale) == 1 and values.ndim > 1:  # per-channel: broadcast along `axis`
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
    return ((values - zero) * scale).astype(np.float32)


def _drop_unread(model: onnx.ModelProto) -> None:
    """Remove Q/DQ nodes (and then initializers) whose outputs nothing reads any more."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        dead = [
            n
            for n in graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not set(n.output) & read
        ]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input} | outputs
    kept = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def rank_layers(
    float_path: Path, qdq_path: Path, batches: list, input_names: list[str], budget_s: float
) -> list[LayerError]:
    """Layers worst first. ORT-style Q/DQ graphs get the full diagnosis; when its name matching finds
    nothing (NNCF names its Q/DQ tensors q_output_*/dq_output_*), the one-at-a-time sweep alone ranks
    every quantized activation by the noise it adds at the outputs, under its producer's name."""
    import logging

    from optcli.quantization.diagnose import diagnose
    from optcli.quiet import quiet_loggers

    # ORT's weight matching logs an error for every NNCF-named weight it cannot pair: expected here.
    with quiet_loggers("", level=logging.CRITICAL):
        layers = diagnose(float_path, qdq_path, batches, input_names, time_budget_s=budget_s)
    if layers:
        return layers
    return _sweep_activations(float_path, qdq_path, batches, input_names, budget_s)


def _sweep_activations(
    float_path: Path, qdq_path: Path, batches: list, input_names: list[str], budget_s: float
) -> list[LayerError]:
    import tempfile

    import onnx

    from optcli.quantization.diagnose import LayerError
    from optcli.quantization.selectors import module_path
    from optcli.quantization.sensitivity import Sweep

    float_model = onnx.load(str(float_path))
    producers = {out: node for node in float_model.graph.node for out in node.output}
    with tempfile.TemporaryDirectory(dir=qdq_path.parent) as tmp:
        sweep = Sweep(float_model, onnx.load(str(qdq_path)), Path(tmp))
        layers = []
        for tensor in sweep.switches:
            node = producers.get(tensor)
            layers.append(
                LayerError(
                    node=node.name if node is not None else tensor,
                    op_type=node.op_type if node is not None else "input",
                    module=module_path(node) if node is not None else "",
                    output=tensor,
                    sqnr_db=math.nan,
                    added_noise=0.0,
                )
            )
        sweep.measure(layers, batches, input_names, time.perf_counter() + budget_s)
    # Measured first, worst first (NaN: made an output non-finite); unmeasured keep graph order.
    return sorted(
        layers,
        key=lambda layer: (
            layer.output_noise is not None,
            math.inf
            if layer.output_noise is not None and math.isnan(layer.output_noise)
            else layer.output_noise or 0,
        ),
        reverse=True,
    )


def margin(result: EngineValidation, shared: dict[str, str], own: dict[str, str]) -> tuple[float, list[str]]:
    """How far the engine is inside its validate gates: the smallest relative slack over the gates
    (>= 0: every gate holds; -inf: NaN/Inf outputs or a gate's metric missing), and the failing gates."""
    gates = engine_gates(shared, own, VALIDATION_METRICS)
    worst, failed = math.inf, []
    if result.problem:
        return -math.inf, [f"validate.finite ({result.problem})"]
    for metric, expr in gates.items():
        threshold = Threshold.parse(expr)
        value = result.metric(metric)
        if value is None or math.isnan(value):
            slack = -math.inf
        else:
            size = abs(value - threshold.value) / max(abs(threshold.value), 1e-12)
            slack = size if threshold.holds(value) else -max(size, 1e-12)
        if slack < 0:
            failed.append(f"{metric} {value if value is None else round(value, 5)} (needs {expr})")
        worst = min(worst, slack)
    return (0.0 if worst == math.inf else worst), failed


@dataclass
class SearchResult:
    passed: bool
    kept_float: list[str]  # node names, in the order they were added
    margin: float
    initial_margin: float
    trials: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search(
    groups: list[list[str]],
    evaluate: Callable[[list[str]], float],
    *,
    initial_margin: float,
    max_trials: int,
    deadline: float,
    clock: Callable[[], float] = time.perf_counter,
) -> SearchResult:
    """Greedy over the ranked groups until the margin is >= 0, then prune: drop each kept group (last
    added first) whose removal still passes. `evaluate(nodes)` returns the margin with those in float."""
    greedy = recover(
        groups,
        evaluate,
        initial_value=initial_margin,
        target=0.0,
        max_trials=max_trials,
        time_budget_s=max(deadline - clock(), 0.0),
        clock=clock,
    )
    trials = [
        {"kept_float": t.excluded, "margin": t.value, "kept": t.kept, "phase": "add"} for t in greedy.trials
    ]
    result = SearchResult(greedy.passed, list(greedy.excluded), greedy.value, initial_margin, trials)
    result.stopped_by = greedy.stopped_by
    if not greedy.passed:
        return result
    added, before = [], 0
    for trial in greedy.trials:  # each kept trial added one group after the previous kept set
        if trial.kept:
            added.append(trial.excluded[before:])
            before = len(trial.excluded)
    for group in reversed(added[:-1]):  # the last group made it pass: it is needed
        if len(result.trials) >= max_trials or clock() >= deadline:
            break
        fewer = [n for n in result.kept_float if n not in group]
        value = evaluate(fewer)
        keep = value >= 0.0
        result.trials.append({"kept_float": fewer, "margin": value, "kept": keep, "phase": "prune"})
        if keep:
            result.kept_float, result.margin = fewer, value
    return result


def worst_samples(batches: list[dict[str, np.ndarray]], cosines: list[float], count: int) -> list[dict]:
    """The `count` samples with the lowest cosine, as one batch (inputs are batch-first). The layer
    ranking runs one model pass per layer over them: on the samples that fail a worst-sample gate it
    ranks what breaks them, at a fraction of the cost of more samples (ResNet-50, ~120 layers, 2
    cores: 0.29 s a pass on 2 samples, 0.38 s on 4, so ~0.2 s of a pass does not depend on the samples)."""
    import numpy as np

    names = list(batches[0])
    samples = [{n: b[n][i : i + 1] for n in names} for b in batches for i in range(len(b[names[0]]))]
    # A non-finite output (NaN cosine) is the worst there is.
    order = sorted(range(len(samples)), key=lambda i: np.nan_to_num(cosines[i], nan=-np.inf))[:count]
    return [{n: np.concatenate([samples[i][n] for i in sorted(order)]) for n in names}]


def sample_cosines(reference: list[np.ndarray], produced: list[np.ndarray]) -> list[float]:
    """Per sample of one batch: the cosine between all its outputs, flattened, and the reference's."""
    import numpy as np

    count = len(reference[0])
    ref = np.concatenate([np.asarray(r, np.float64).reshape(count, -1) for r in reference], axis=1)
    out = np.concatenate([np.asarray(o, np.float64).reshape(count, -1) for o in produced], axis=1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    return list((ref * out).sum(axis=1) / np.maximum(norms, 1e-30))
