"""The greedy recovery loop, on a scripted metric (the end-to-end run is in test_recovery_e2e)."""

from __future__ import annotations

from optcli.quantization.recovery import recover


def metric_where(bad: set[str], base: float = 0.5):
    """Accuracy rises by 0.2 for each truly bad layer excluded; other exclusions do nothing."""
    calls = []

    def evaluate(excluded: list[str]) -> float:
        calls.append(list(excluded))
        return base + 0.2 * len(bad & set(excluded))

    return evaluate, calls


def test_keeps_only_layers_that_help_and_stops_at_the_gate():
    evaluate, calls = metric_where({"b", "d"})
    result = recover(
        ["a", "b", "c", "d", "e"], evaluate, initial_value=0.5, target=0.9, max_trials=10, time_budget_s=60
    )
    assert result.passed and result.excluded == ["b", "d"]
    assert calls == [["a"], ["b"], ["b", "c"], ["b", "d"]]  # 'e' never tried: the gate passed
    assert [t.kept for t in result.trials] == [False, True, False, True]


def test_trial_budget_gives_a_clear_failure():
    evaluate, _ = metric_where({"z"})
    result = recover(
        [["a"], ["b"], ["c"]], evaluate, initial_value=0.5, target=0.9, max_trials=2, time_budget_s=60
    )
    assert not result.passed and result.stopped_by == "max_trials (2)"
    assert result.value == 0.5 and result.target == 0.9


def test_time_budget():
    ticks = iter(range(0, 1000, 30))
    evaluate, calls = metric_where(set())
    result = recover(
        ["a", "b", "c", "d"],
        evaluate,
        initial_value=0.1,
        target=0.9,
        max_trials=10,
        time_budget_s=100,
        clock=lambda: next(ticks),
    )
    assert not result.passed and result.stopped_by.startswith("time_budget_s") and len(calls) < 4


def test_lower_is_better_metrics_and_already_passing():
    result = recover(
        ["a"],
        lambda ex: 0.0,
        initial_value=0.001,
        target=0.01,
        higher_is_better=False,
        max_trials=3,
        time_budget_s=10,
    )
    assert result.passed and result.stopped_by == "already passing" and not result.trials


def test_groups_are_tried_together_and_overlaps_skipped():
    evaluate, calls = metric_where({"b", "c"}, base=0.4)
    result = recover(
        [["b", "c"], ["c"], ["a"]], evaluate, initial_value=0.4, target=0.8, max_trials=5, time_budget_s=60
    )
    assert result.passed and result.excluded == ["b", "c"] and calls == [["b", "c"]]


# -- the sensitivity sweep that ranks the candidates ---------------------------------------------


def _outlier_mlp_onnx(path):
    """x -> Gemm -> Relu -> Gemm (unit 0 ~1000x the rest) -> Relu -> Gemm (ignores unit 0)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1, w2, w3 = (rng.uniform(-0.3, 0.3, shape).astype(np.float32) for shape in ((16, 32), (32, 32), (32, 4)))
    b2 = np.zeros(32, np.float32)
    w2[:, 0] *= 1000.0
    b2[0] = 1000.0
    w3[0, :] = 0.0
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (b2, "b2"), (w3, "w3"))]
    nodes = [
        helper.make_node("Gemm", ["x", "w1"], ["h1"], name="inp"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "w2", "b2"], ["h2"], name="mid"),
        helper.make_node("Relu", ["h2"], ["r2"], name="relu2"),
        helper.make_node("Gemm", ["r2", "w3"], ["y"], name="out"),
    ]
    graph = helper.make_graph(
        nodes,
        "outlier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_sweep_ranks_the_layer_whose_output_quantization_ruins_the_model(tmp_path):
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from optcli.ort_session import create_session
    from optcli.quantization.diagnose import diagnose
    from optcli.quantization.sensitivity import Sweep

    fp32, qdq = tmp_path / "fp32.onnx", tmp_path / "qdq.onnx"
    _outlier_mlp_onnx(fp32)
    x = np.random.default_rng(1).standard_normal((128, 16)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": x[:64]}, {"x": x[64:]}])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(fp32), str(qdq), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    layers = diagnose(fp32, qdq, [{"x": x[:64]}, {"x": x[64:]}], ["x"])
    assert layers[0].node == "mid" and layers[0].model_sqnr_db < 10 < layers[0].sqnr_db
    assert all(layer.model_sqnr_db > 25 for layer in layers[1:])

    # The switched FP32 graph is faithful: all switches on, it computes what the Q/DQ model computes
    # (ORT folded the ReLUs into unsigned Q/DQ pairs there; they are kept here); all off, FP32.
    sweep = Sweep(onnx.load(str(fp32)), onnx.load(str(qdq)), tmp_path)
    assert set(sweep.switches) >= {"x", "r1", "r2", "y", "w1", "w2", "w3"}
    path = tmp_path / "switched.onnx"
    onnx.save(sweep.model, path)
    switched = create_session(path, level="disabled")
    on = {s: np.array(True) for s in sweep.switches.values()}
    off = {s: np.array(False) for s in sweep.switches.values()}
    quantized = create_session(qdq, level="disabled").run(None, {"x": x})[0]
    reference = create_session(fp32, level="disabled").run(None, {"x": x})[0]
    np.testing.assert_allclose(switched.run(None, {"x": x, **on})[0], quantized, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(switched.run(None, {"x": x, **off})[0], reference)
