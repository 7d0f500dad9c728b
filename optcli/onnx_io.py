"""Load and save ONNX files: external data for large models, atomic writes (temp dir + rename)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx

# Protobuf refuses messages over 2 GiB; leave headroom for the graph itself.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def load_model(path: Path, *, load_external_data: bool = True) -> onnx.ModelProto:
    return onnx.load(str(path), load_external_data=load_external_data)


def save_model(model: onnx.ModelProto, dst: Path, *, external_data: bool | None = None) -> Path:
    """Write `model` to `dst` atomically; tensors go to `dst.data` when large (or when asked)."""
    dst = Path(dst)
    use_external = external_data if external_data is not None else model.ByteSize() > EXTERNAL_DATA_THRESHOLD
    data_name = dst.name + ".data"
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        onnx.save_model(
            model,
            str(tmp_dir / dst.name),
            save_as_external_data=use_external,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
        if (tmp_dir / data_name).exists():
            os.replace(tmp_dir / data_name, dst.parent / data_name)
        elif (dst.parent / data_name).exists():
            (dst.parent / data_name).unlink()
        os.replace(tmp_dir / dst.name, dst)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return dst


def node_precision_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Count Q/DQ and Cast nodes: a quick check that quantization or FP16 conversion took effect."""
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Cast"):
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def external_data_locations(path: Path) -> set[str]:
    """Relative paths of the external-data files the model's tensors point to (graph read without them)."""
    model = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in _tensors(model.graph):
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {entry.key: entry.value for entry in tensor.external_data}
            if "location" in entries:
                locations.add(entries["location"])
    return locations


def _tensors(graph: onnx.GraphProto):
    """Initializers and attribute tensors, subgraphs included (onnx has no public walker for this)."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)
