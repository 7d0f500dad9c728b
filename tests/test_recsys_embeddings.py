"""Row-wise embedding-table quantization and id-range checks on small real ONNX models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optcli.errors import UserInputError
from optcli.quantization.embeddings import (
    EmbeddingSettings,
    check_ids,
    find_tables,
    id_limits,
    quantize_embeddings,
    quantize_rows_uint8,
)
from optcli.quantization.summary import precision_by_op
from tests.helpers import run_onnx

BIG, SMALL = (300, 24), (100, 16)  # 24: not a power of two, the block is padded to 32 (one per row)


def _tables_model(path: Path) -> dict[str, np.ndarray]:
    """ids int64 [B, 2]: column 0 indexes a 300-row table, column 1 a 100-row one; outputs both rows."""
    rng = np.random.default_rng(0)
    weights = {
        "big": rng.normal(0, 0.3, BIG).astype(np.float32),
        "small": rng.normal(0, 0.3, SMALL).astype(np.float32),
    }
    consts = [numpy_helper.from_array(np.array(i, np.int64), f"col{i}") for i in (0, 1)]
    nodes = [
        helper.make_node("Gather", ["ids", "col0"], ["ids0"], name="select0", axis=1),
        helper.make_node("Gather", ["big", "ids0"], ["rows_big"], name="lookup_big"),
        helper.make_node("Gather", ["ids", "col1"], ["ids1"], name="select1", axis=1),
        helper.make_node("Cast", ["ids1"], ["ids1_cast"], name="cast1", to=TensorProto.INT64),
        helper.make_node("Gather", ["small", "ids1_cast"], ["rows_small"], name="lookup_small"),
    ]
    graph = helper.make_graph(
        nodes,
        "tables",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 2])],
        [
            helper.make_tensor_value_info("rows_big", TensorProto.FLOAT, ["batch", BIG[1]]),
            helper.make_tensor_value_info("rows_small", TensorProto.FLOAT, ["batch", SMALL[1]]),
        ],
        [numpy_helper.from_array(w, name) for name, w in weights.items()] + consts,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return weights


def _all_ids() -> np.ndarray:
    return np.stack([np.arange(BIG[0]), np.arange(BIG[0]) % SMALL[0]], axis=1).astype(np.int64)


def test_tables_and_id_sources_found(tmp_path):
    _tables_model(tmp_path / "m.onnx")
    model = onnx.load(tmp_path / "m.onnx")
    tables = {t.initializer: t for t in find_tables(model)}
    assert (tables["big"].rows, tables["big"].dim, tables["big"].gathers) == (300, 24, ["lookup_big"])
    assert tables["small"].source == ("ids", 1, 1)  # through the Cast
    limits = {(lim.input, lim.column): lim.rows for lim in id_limits(model)}
    assert limits == {("ids", 0): 300, ("ids", 1): 100}


@pytest.mark.parametrize("bits", [8, 4])
def test_row_wise_quantization(tmp_path, bits):
    """Each row within half a quantization step of the original (its own scale), the small table
    kept in FP32 with the reason, sizes reported; ORT runs the result."""
    weights = _tables_model(tmp_path / "m.onnx")
    record = quantize_embeddings(
        tmp_path / "m.onnx", tmp_path / "q.onnx", EmbeddingSettings(bits=bits, min_rows=200)
    )
    model = onnx.load(tmp_path / "q.onnx")
    ops = [(n.op_type, n.domain) for n in model.graph.node]
    assert ("GatherBlockQuantized", "com.microsoft") in ops
    assert [
        n.input[0] for n in model.graph.node if n.op_type == "Gather" and n.name.startswith("lookup")
    ] == ["small"]
    assert "big" not in {i.name for i in model.graph.initializer}
    big, small = run_onnx(tmp_path / "q.onnx", {"ids": _all_ids()})
    np.testing.assert_array_equal(small, weights["small"][_all_ids()[:, 1]])  # untouched
    w = weights["big"]
    low, high = np.minimum(w.min(1), 0), np.maximum(w.max(1), 0)
    step = (high - low) / (2**bits - 1)  # per row: a row-wise scale, not one for the table
    error = np.abs(big - w).max(axis=1)
    assert (error <= step / 2 * 1.01 + 1e-7).all()
    assert error.max() > 0  # really quantized
    rows = {r["name"]: r for r in record["tables"]}
    assert rows["small"]["bits"] == 32 and "min_rows 200" in rows["small"]["kept_reason"]
    per_row = {8: BIG[1] + 5, 4: BIG[1] / 2 + 4.5}[bits]
    assert rows["big"]["bytes_after"] == int(BIG[0] * per_row) and rows["big"]["bytes_before"] == 300 * 24 * 4
    assert record["quantized_tables"] == 1 and record["table_bytes"]["ratio"] < 1
    # The quantized table counts as its bits, the one kept as a plain Gather as FP32.
    by_op = precision_by_op(model)
    assert by_op["GatherBlockQuantized"] == {{8: "int8", 4: "int4"}[bits]: 1}
    assert by_op["Gather"]["fp32"] >= 1 and set(by_op["Gather"]) == {"fp32"}


def test_uint8_rows_exact_scheme():
    w = np.array([[-1.0, 0.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0], [0.1, 0.2, 0.3, 0.4]], np.float32)
    data, scale, zero = quantize_rows_uint8(w)
    assert scale[1, 0] == 0 and (data[1] == zero[1, 0]).all()  # an all-zero row stays exact
    deq = (data.astype(np.float32) - zero) * scale
    np.testing.assert_allclose(deq, w, atol=float(scale.max()) / 2 + 1e-7)
    assert zero[2, 0] == 0  # range widened to include 0: the zero point is representable


def test_out_of_range_ids_named(tmp_path):
    _tables_model(tmp_path / "m.onnx")
    limits = id_limits(onnx.load(tmp_path / "m.onnx"))
    good = {"ids": np.array([[299, 99], [0, 0]], np.int64)}
    check_ids(good, limits, "validate.data")
    with pytest.raises(
        UserInputError, match=r"validate\.data: input 'ids' column 0 holds id 300 at sample 13,"
    ):
        check_ids({"ids": np.array([[5, 1], [300, 1]], np.int64)}, limits, "validate.data", 12)
    with pytest.raises(UserInputError, match=r"column 1 holds id -1 .*'small' it indexes \(100 rows"):
        check_ids({"ids": np.array([[5, -1]], np.int64)}, limits, "x")
