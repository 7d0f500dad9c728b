"""Embedding tables in an ONNX graph: finding them, row-wise weight-only INT8/4-bit quantization, and
the id ranges their inputs must respect.

A table is a float initializer [rows, dim] read by `Gather(table, ids)` on axis 0. Quantized tables
become ONNX Runtime's `com.microsoft.GatherBlockQuantized` with one block per row (block_size >= dim),
i.e. a scale and zero point per row, the row dequantized on lookup:
- 4 bits: `onnxruntime.quantization.matmul_nbits_quantizer` (its Gather support, uint4 data).
- 8 bits: that quantizer refuses bits != 4 for Gather (ORT 1.32), while the GatherBlockQuantized
  kernel takes uint8 data with bits=8; so the rows are quantized here in numpy, with the same
  asymmetric scheme (range widened to include 0, as the library does) and the same op.
GatherBlockQuantized does not check ids (out-of-range ids read zeros), so id ranges are checked in
the data before any engine runs (`id_limits`, `check_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from optcli.errors import UserInputError
from optcli.strict import StrictModel

if TYPE_CHECKING:
    import onnx

# Ops that hand ids on unchanged (for tracing a table's ids back to a model input).
_PASS_THROUGH = {"Cast", "Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten"}


class EmbeddingSettings(StrictModel):
    """Row-wise weight-only quantization of embedding tables (Gather on large float initializers)."""

    bits: Literal[8, 4] = Field(
        8, description="8: uint8 rows (0.27x the FP32 bytes at dim 64); 4: uint4 rows (0.14x), less accurate."
    )
    min_rows: int = Field(1000, ge=1, description="Quantize only tables with at least this many rows.")
    min_bytes: int = Field(0, ge=0, description="... and at least this many FP32 bytes (rows x dim x 4).")


@dataclass
class Table:
    initializer: str
    rows: int
    dim: int
    gathers: list[str]  # node names of the Gathers reading it
    source: tuple[str, int | None, int] | None  # (model input, column or None, Gather axis) or None
    other_use: bool = False  # read by a non-Gather node too (e.g. a tied output projection)

    @property
    def nbytes(self) -> int:
        return self.rows * self.dim * 4


@dataclass
class IdLimit:
    input: str
    column: int | None
    axis: int
    rows: int
    table: str

    def where(self) -> str:
        return f"input '{self.input}'" + (f" column {self.column}" if self.column is not None else "")


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    found = {i.name: i for i in graph.initializer if i.data_type == 7 and int(np.prod(i.dims)) <= 16}
    values = {name: numpy_helper.to_array(t) for name, t in found.items()}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _attr(node, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _id_source(tensor: str, producers: dict, inputs: set[str], constants: dict) -> tuple | None:
    """(input, column, axis) the ids come from unchanged, or None (computed ids: hashed, offset...)."""
    column, axis = None, 1
    for _ in range(32):
        if tensor in inputs:
            return tensor, column, axis
        node = producers.get(tensor)
        if node is None:
            return None
        if node.op_type in _PASS_THROUGH:
            tensor = node.input[0]
        elif node.op_type == "Gather" and column is None and node.input[1] in constants:
            index = constants[node.input[1]]
            if index.size != 1 or _attr(node, "axis", 0) == 0:
                return None
            column, axis, tensor = int(index.ravel()[0]), _attr(node, "axis", 0), node.input[0]
        else:
            return None
    return None


def find_tables(model: onnx.ModelProto) -> list[Table]:
    """Float32 rank-2 initializers gathered on axis 0 (the data need not be loaded: dims suffice)."""
    graph = model.graph
    candidates = {i.name: i for i in graph.initializer if i.data_type == 1 and len(i.dims) == 2}
    producers = {out: node for node in graph.node for out in node.output}
    inputs = {i.name for i in graph.input} - set(candidates)
    constants = _constants(graph)
    tables: dict[str, Table] = {}
    other: set[str] = set()
    for node in graph.node:
        is_lookup = node.op_type == "Gather" and not node.domain and _attr(node, "axis", 0) == 0
        if is_lookup and node.input[0] in candidates:
            init = candidates[node.input[0]]
            table = tables.setdefault(
                init.name, Table(init.name, int(init.dims[0]), int(init.dims[1]), [], None)
            )
            table.gathers.append(node.name)
            table.source = table.source or _id_source(node.input[1], producers, inputs, constants)
        else:
            other.update(name for name in node.input if name in candidates)
    for table in tables.values():
        table.other_use = table.initializer in other
    return list(tables.values())


def id_limits(model: onnx.ModelProto) -> list[IdLimit]:
    """Each model input (column) that indexes a table unchanged, with the table's row count."""
    return [
        IdLimit(t.source[0], t.source[1], t.source[2], t.rows, t.initializer)
        for t in find_tables(model)
        if t.source is not None
    ]


def check_ids(batch: dict[str, np.ndarray], limits: list[IdLimit], where: str, first: int = 0) -> None:
    """UserInputError naming the input, column, id, sample (`first` is the batch's first sample's
    index in the source) and table when an id is outside [0, rows)."""
    for limit in limits:
        values = batch.get(limit.input)
        if values is None or values.size == 0 or not np.issubdtype(values.dtype, np.integer):
            continue
        if limit.column is not None:
            if values.ndim < 2 or not -values.shape[limit.axis] <= limit.column < values.shape[limit.axis]:
                continue  # not the layout the graph expects; the spec check reports shapes
            values = np.take(values, limit.column, axis=limit.axis)
        bad = (values < 0) | (values >= limit.rows)
        if bad.any():
            sample = int(np.argwhere(bad)[0][0])
            value = int(values[np.unravel_index(int(np.argmax(bad)), bad.shape)])
            raise UserInputError(
                f"{where}: {limit.where()} holds id {value} at sample {first + sample}, outside the range "
                f"of the embedding table '{limit.table}' it indexes "
                f"({limit.rows} rows: ids 0..{limit.rows - 1}); "
                f"{int(bad.sum())} of {bad.size} ids in this batch are out of range",
                hint="map unseen or hashed ids into the table (e.g. id % rows, or a reserved row) before "
                "they reach the model; a runtime would fail on them or silently read zeros",
            )


def choose(tables: list[Table], settings: EmbeddingSettings) -> tuple[list[Table], dict[str, str]]:
    """Tables to quantize, and why each other one stays in FP32."""
    chosen, kept = [], {}
    for table in tables:
        if table.other_use:
            kept[table.initializer] = "also read by a non-Gather node"
        elif table.rows < settings.min_rows:
            kept[table.initializer] = f"{table.rows} rows < min_rows {settings.min_rows}"
        elif table.nbytes < settings.min_bytes:
            kept[table.initializer] = f"{table.nbytes} bytes < min_bytes {settings.min_bytes}"
        else:
            chosen.append(table)
    return chosen, kept


def block_size(dim: int) -> int:
    """One block per row: the kernel wants a power of two >= 16, and a block longer than the row is one."""
    return max(16, 1 << (dim - 1).bit_length())


def quantize_rows_uint8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row asymmetric uint8: (data, scales [rows, 1], zero points [rows, 1])."""
    low = np.minimum(weight.min(axis=1, keepdims=True), 0.0)
    high = np.maximum(weight.max(axis=1, keepdims=True), 0.0)
    scale = ((high - low) / 255.0).astype(np.float32)
    safe = np.where(scale == 0, 1.0, scale)
    zero = np.where(scale == 0, 0, np.round(-low / safe)).clip(0, 255).astype(np.uint8)
    data = np.round(weight / safe + zero).clip(0, 255).astype(np.uint8)
    return data, scale, zero


def _rewrite_uint8(model: onnx.ModelProto, tables: list[Table]) -> None:
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    names = {t.initializer: t for t in tables}
    kept, replaced = [], {}
    for init in graph.initializer:
        if init.name not in names:
            kept.append(init)
            continue
        data, scale, zero = quantize_rows_uint8(numpy_helper.to_array(init).astype(np.float32))
        replaced[init.name] = [init.name + "_Q8", init.name + "_scales", init.name + "_zero_points"]
        kept += [
            numpy_helper.from_array(data, replaced[init.name][0]),
            numpy_helper.from_array(scale, replaced[init.name][1]),
            helper.make_tensor(
                replaced[init.name][2], TensorProto.UINT8, zero.shape, zero.tobytes(), raw=True
            ),
        ]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    nodes = []
    for node in graph.node:
        if node.op_type == "Gather" and not node.domain and node.input[0] in replaced:
            q, s, z = replaced[node.input[0]]
            dim = names[node.input[0]].dim
            node = helper.make_node(
                "GatherBlockQuantized", [q, node.input[1], s, z], list(node.output), name=node.name + "_Q8",
                domain="com.microsoft", gather_axis=0, quantize_axis=1, block_size=block_size(dim), bits=8,
            )  # fmt: skip
        nodes.append(node)
    graph.ClearField("node")
    graph.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))


def _rewrite_uint4(model: onnx.ModelProto, tables: list[Table]) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from optcli.quiet import quiet_loggers

    sizes = {block_size(t.dim) for t in tables}
    for size in sorted(sizes):  # one pass per block size (the library takes one); others excluded
        todo = {g for t in tables if block_size(t.dim) == size for g in t.gathers}
        rest = [n.name for n in model.graph.node if n.op_type == "Gather" and n.name not in todo]
        with quiet_loggers("onnxruntime.quantization"):
            quantizer = MatMulNBitsQuantizer(
                model, bits=4, block_size=size, is_symmetric=False, nodes_to_exclude=rest,
                op_types_to_quantize=("Gather",), quant_axes=(("Gather", 1),),
            )  # fmt: skip
            quantizer.process()
        model = quantizer.model.model
    return model


def quantize_embeddings(src: Path, dst: Path, settings: EmbeddingSettings) -> dict[str, Any]:
    """Write `dst` with the chosen tables quantized row-wise; the report's `embeddings` record."""
    from optcli.onnx_io import load_model, save_model

    model = load_model(src)
    tables = find_tables(model)
    chosen, kept = choose(tables, settings)
    unnamed = [t.initializer for t in chosen if not all(t.gathers)]
    if unnamed:  # the library selects nodes by name
        for index, node in enumerate(model.graph.node):
            node.name = node.name or f"node_{index}"
        tables = find_tables(model)
        chosen, kept = choose(tables, settings)
    if chosen and settings.bits == 8:
        _rewrite_uint8(model, chosen)
    elif chosen:
        model = _rewrite_uint4(model, chosen)
    save_model(model, dst)
    return embedding_report(settings, tables, chosen, kept)


def embedding_report(settings: EmbeddingSettings, tables, chosen, kept: dict[str, str]) -> dict[str, Any]:
    # Per row: dim values of `bits`, a float32 scale and a zero point of `bits` (packed for 4 bits).
    per_row = {8: lambda d: d + 4 + 1, 4: lambda d: (d + 1) // 2 + 4 + 0.5}
    names = {t.initializer for t in chosen}
    records = [
        {
            "name": t.initializer,
            "rows": t.rows,
            "dim": t.dim,
            "bits": settings.bits if t.initializer in names else 32,
            "bytes_before": t.nbytes,
            "bytes_after": int(t.rows * per_row[settings.bits](t.dim))
            if t.initializer in names
            else t.nbytes,
            "kept_reason": kept.get(t.initializer),
        }
        for t in tables
    ]
    before, after = sum(r["bytes_before"] for r in records), sum(r["bytes_after"] for r in records)
    return {
        "bits": settings.bits,
        "scheme": "row-wise asymmetric (per-row scale and zero point), com.microsoft.GatherBlockQuantized",
        "quantized_tables": len(chosen),
        "tables": records,
        "table_bytes": {"before": before, "after": after, "ratio": after / before if before else None},
    }


def model_bytes(path: Path) -> int:
    """An ONNX model's size on disk, external data included."""
    from optcli.artifacts import onnx_files

    return sum(p.stat().st_size for p in onnx_files(Path(path)))


def with_model_bytes(record: dict[str, Any], before: Path, after: Path) -> dict[str, Any]:
    """The record with the whole model's size on disk before (float) and after quantization."""
    sizes = {"before": model_bytes(before), "after": model_bytes(after)}
    return {**record, "model_bytes": {**sizes, "ratio": sizes["after"] / sizes["before"]}}
