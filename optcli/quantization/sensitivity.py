"""The one-at-a-time sensitivity sweep that ranks layers for diagnosis and recovery (see diagnose.py)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper

from optcli.calibration import Batch
from optcli.onnx_io import save_model

if TYPE_CHECKING:
    from optcli.quantization.diagnose import LayerError

SWITCH = "optcli_sweep"  # prefix of everything the sweep adds to the FP32 graph


class Sweep:
    """The FP32 graph with each tensor T the Q/DQ model quantizes read through
    `If(switch_T, DequantizeLinear(QuantizeLinear(T)), T)`, the Q/DQ nodes and scales copied from
    the quantized model; every switch is a boolean graph input, off unless a layer turns it on."""

    def __init__(self, float_model: onnx.ModelProto, qdq: onnx.ModelProto, folder: Path) -> None:
        self.folder = folder
        self.model = float_model
        self.reads: dict[str, list[str]] = {}  # node name -> the switched tensors it reads
        self.constants = {
            *(i.name for i in float_model.graph.initializer),
            *(i.name for i in float_model.graph.input),
        }
        self.switches = self._build(float_model, qdq)

    def _build(self, model: onnx.ModelProto, qdq: onnx.ModelProto) -> dict[str, str]:
        graph = model.graph
        sources = [*(i.name for i in graph.input), *(i.name for i in graph.initializer)]  # not node outputs
        present = {*sources, *(name for node in graph.node for name in node.output)}
        pairs = _qdq_pairs(qdq, present)
        switches = {tensor: f"{SWITCH}/on/{tensor}" for tensor in pairs}
        added: dict[str, onnx.NodeProto] = {}
        for tensor, (nodes, initializers, elem_type) in pairs.items():
            graph.initializer.extend(initializers)
            graph.input.append(helper.make_tensor_value_info(switches[tensor], TensorProto.BOOL, []))
            added[tensor] = _switch(switches[tensor], tensor, nodes, elem_type)
        rewired = {tensor: added[tensor].output[0] for tensor in pairs}
        original = list(graph.node)
        for node in original:
            self.reads[node.name] = [name for name in node.input if name in rewired]
            for i, name in enumerate(node.input):
                node.input[i] = rewired.get(name, name)
        order = [added[name] for name in sources if name in added]
        for node in original:
            order += [node, *(added[out] for out in node.output if out in added)]
        del graph.node[:]
        graph.node.extend(order)
        for output in graph.output:
            output.name = rewired.get(output.name, output.name)
        _import_opsets(model, qdq)
        return switches

    def measure(
        self,
        layers: list[LayerError],
        batches: list[Batch],
        input_names: list[str],
        deadline: float | None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Fill each layer's output_noise: its own switches on, all others off."""
        from optcli.ort_session import create_session

        if not self.switches or not batches or (deadline is not None and clock() >= deadline):
            return
        path = save_model(self.model, self.folder / "sweep.onnx")
        # No fusion: the Q/DQ arithmetic as written. Level `all` was only ~10% faster on ResNet-50
        # (0.344 vs 0.378 s a pass, same ranking; bench/sweep_level.py), presumably as the If switches
        # leave it little to fuse.
        session = create_session(path, level="disabled")
        off = {switch: np.array(False) for switch in self.switches.values()}
        feeds = [{name: batch[name] for name in input_names} for batch in batches]
        reference = [session.run(None, {**feed, **off}) for feed in feeds]
        for layer in layers:
            tensors = self.tensors_of(layer)
            if not tensors or (deadline is not None and clock() >= deadline):
                continue
            on = {**off, **{self.switches[t]: np.array(True) for t in tensors}}
            outputs = [session.run(None, {**feed, **on}) for feed in feeds]
            layer.output_noise = _relative_noise(reference, outputs)
            layer.model_sqnr_db = _db(layer.output_noise)

    def tensors_of(self, layer: LayerError) -> list[str]:
        """One layer's switches: its output, and the weights and graph inputs it reads (an activation
        it reads is another layer's output: counting it here too would blame both for one error)."""
        own = [name for name in self.reads.get(layer.node, []) if name in self.constants]
        return [t for t in dict.fromkeys([layer.output, *own]) if t in self.switches]


def _switch(switch: str, tensor: str, nodes: list[onnx.NodeProto], elem_type: int) -> onnx.NodeProto:
    """`If(switch, DQ(Q(tensor)), tensor)`. An If, not a Where: only the branch taken runs, so a pass
    costs an FP32 pass plus the Q/DQ switched on (with Where every Q/DQ ran on every pass: 4x slower)."""
    keep = helper.make_node("Identity", [tensor], [f"{switch}/fp32"], name=f"{switch}/fp32")

    def branch(name: str, body: list[onnx.NodeProto]) -> onnx.GraphProto:
        output = helper.make_tensor_value_info(body[-1].output[0], elem_type, None)
        return helper.make_graph(body, f"{switch}/{name}", [], [output])

    return helper.make_node(
        "If",
        [switch],
        [f"{switch}/value"],
        name=switch,
        then_branch=branch("quantized", nodes),
        else_branch=branch("fp32", [keep]),
    )


def _qdq_pairs(
    qdq: onnx.ModelProto, present: set[str]
) -> dict[str, tuple[list[onnx.NodeProto], list[TensorProto], int]]:
    """For each FP32 tensor the Q/DQ model quantizes: its Q (activations only) and DQ nodes reading
    that tensor, with their scales, zero points and quantized weights under names of their own, and
    the element type the DQ produces (its scale's)."""
    inits = {i.name: i for i in qdq.graph.initializer}
    quantizers = {n.output[0]: n for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
    pairs: dict[str, tuple[list[onnx.NodeProto], list[TensorProto], int]] = {}
    for dq in (n for n in qdq.graph.node if n.op_type == "DequantizeLinear"):
        q = quantizers.get(dq.input[0])
        if q is None and dq.input[0] not in inits:
            continue  # fed by something else than a Q or a constant: not a quantized FP32 tensor
        tensor = float_name(q.input[0] if q is not None else dq.input[0])
        if tensor in pairs or tensor not in present:
            continue
        copies = _Copies(inits, f"{SWITCH}/{tensor}")
        nodes = []
        if q is not None:
            nodes.append(_copy_node(q, [tensor, *map(copies.own, q.input[1:])], f"{copies.prefix}/q"))
        source = nodes[-1].output[0] if nodes else copies.own(dq.input[0])
        nodes.append(_copy_node(dq, [source, *map(copies.own, dq.input[1:])], f"{copies.prefix}/dq"))
        scale = inits.get(dq.input[1])
        pairs[tensor] = (nodes, copies.tensors, scale.data_type if scale is not None else TensorProto.FLOAT)
    return pairs


class _Copies:
    """Initializers of the Q/DQ model copied under a prefix (scales are shared between tensors there)."""

    def __init__(self, inits: dict[str, TensorProto], prefix: str) -> None:
        self.inits, self.prefix, self.tensors = inits, prefix, []

    def own(self, name: str) -> str:
        if name not in self.inits:
            return name  # "" (an omitted optional input) or a tensor of the graph
        copy = TensorProto()
        copy.CopyFrom(self.inits[name])
        copy.name = f"{self.prefix}/{name}"
        self.tensors.append(copy)
        return copy.name


def _copy_node(node: onnx.NodeProto, inputs: list[str], output: str) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.name = output
    del copy.input[:]
    copy.input.extend(inputs)
    del copy.output[:]
    copy.output.append(output)
    return copy


def _import_opsets(model: onnx.ModelProto, qdq: onnx.ModelProto) -> None:
    """The quantized model's opsets where newer (FP8 Q/DQ needs opset 19) or missing (contrib Q/DQ)."""
    versions = {o.domain: o for o in model.opset_import}
    for opset in qdq.opset_import:
        if opset.domain not in versions:
            model.opset_import.append(opset)
        elif versions[opset.domain].version < opset.version:
            versions[opset.domain].version = opset.version


def _relative_noise(reference: list[list[np.ndarray]], produced: list[list[np.ndarray]]) -> float:
    """Noise power over signal power, all outputs of all batches together (positions where the FP32
    model itself is non-finite are left out; NaN when quantizing made a finite output non-finite)."""
    signal = noise = 0.0
    for ref_batch, out_batch in zip(reference, produced):
        for ref, out in zip(ref_batch, out_batch):
            ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
            finite = np.isfinite(ref)
            signal += float(np.sum(ref[finite] ** 2))
            noise += float(np.sum((out[finite] - ref[finite]) ** 2))
    if not math.isfinite(noise):
        return math.nan
    return noise / max(signal, np.finfo(np.float64).tiny)


def _db(noise: float) -> float | None:
    if math.isnan(noise):
        return None
    return round(-10 * math.log10(max(noise, 1e-30)), 3)


def float_name(name: str) -> str:
    """ORT's Q/DQ naming back to the FP32 tensor: 'w_quantized' -> 'w', 'y_QuantizeLinear_Input' -> 'y'."""
    for suffix in ("_QuantizeLinear_Input", "_quantized"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
