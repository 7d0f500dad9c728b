"""Per-sample metrics and the `target: cpu` mixed-precision candidate (real NNCF, OpenVINO, ORT)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from helpers import run_onnx

from optcli.console import SilentUI
from optcli.metrics import OutputAccumulator, summarize
from optcli.pipeline import run_recipe
from optcli.plan import Machine
from optcli.quantization.mixed_precision import keep_float, margin, search
from optcli.recipe import load_recipe
from optcli.validate import EngineValidation


def test_worst_sample_metrics_see_what_the_global_ones_hide():
    """63 exact samples and one with its sign flipped: the global cosine stays ~0.97, the worst is -1."""
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((64, 10))
    candidate = reference.copy()
    candidate[5] *= -1
    acc = OutputAccumulator()
    acc.update(reference[:32], candidate[:32])  # the bad sample in the first of two batches
    acc.update(reference[32:], candidate[32:])
    result = acc.result()
    assert result["cosine"] > 0.95 and result["cosine_min"] == pytest.approx(-1.0)
    assert result["snr_db"] > 10 and result["snr_db_min"] == pytest.approx(10 * math.log10(1 / 4))
    summary = summarize({"a": result, "b": {**result, "cosine_min": 0.5, "snr_db_min": 40.0}})
    assert summary["cosine_min"] == pytest.approx(-1.0) and summary["snr_db_min"] < 0
    nan = OutputAccumulator()
    nan.update(reference[:2], np.full((2, 10), np.nan))
    assert math.isnan(nan.result()["cosine_min"]) and nan.result()["snr_db_min"] == -math.inf


def _validation(**metrics) -> EngineValidation:
    summary = {"non_finite": 0.0, "baseline_non_finite": 0.0, "values": 10.0, **metrics}
    return EngineValidation("e", "int8", {}, summary)


def test_margin_is_the_smallest_relative_slack_over_the_gates():
    gates = {"cosine_min": ">= 0.99", "max_abs": "<= 0.5"}
    value, failed = margin(_validation(cosine_min=0.995, max_abs=0.25), gates, {})
    assert value == pytest.approx(0.005 / 0.99) and not failed
    value, failed = margin(_validation(cosine_min=0.98, max_abs=0.25), gates, {"max_abs": "<= 0.1"})
    assert value == pytest.approx(-1.5) and failed == [
        "cosine_min 0.98 (needs >= 0.99)",
        "max_abs 0.25 (needs <= 0.1)",
    ]  # the engine's own gate overrides the shared one
    assert margin(_validation(cosine=0.999), {"top1_agreement": ">= 0.9"}, {})[0] == -math.inf  # missing


def test_search_adds_ranked_groups_then_prunes_the_unneeded():
    """Only group C matters; the ranking puts A and B first, each a small improvement: the greedy
    pass keeps all three, the prune pass drops A and B again."""
    calls = []

    def evaluate(nodes):
        calls.append(sorted(nodes))
        return (0.1 if "c" in nodes else -1.0) + 0.01 * len(nodes)

    result = search([["a"], ["b"], ["c"]], evaluate, initial_margin=-1.0, max_trials=10, deadline=math.inf)
    assert result.passed and result.kept_float == ["c"]
    assert [t["phase"] for t in result.trials] == ["add", "add", "add", "prune", "prune"]
    bounded = search([["a"], ["b"], ["c"]], evaluate, initial_margin=-1.0, max_trials=2, deadline=math.inf)
    assert not bounded.passed and bounded.stopped_by == "max_trials (2)" and len(bounded.trials) == 2


def test_keep_float_rewires_a_layer_to_its_float_inputs(exported_cnn, tmp_path):
    """On NNCF's Q/DQ graph: the Conv reads the float input and the float model's weight (no
    DequantizeLinear in front of it), unused Q/DQ nodes are gone, and the output moves towards FP32."""
    pytest.importorskip("nncf")
    from optcli.quantization import QuantizationSettings, nncf_onnx

    path = exported_cnn[0]
    qdq_path = tmp_path / "nncf.onnx"
    rng = np.random.default_rng(0)
    batches = [{"x": rng.standard_normal((8, 3, 16, 16)).astype(np.float32)} for _ in range(2)]
    nncf_onnx.quantize(
        path, qdq_path, QuantizationSettings(calibration={"samples": 16}), iter(batches), ["x"]
    )
    float_model, qdq = onnx.load(str(path)), onnx.load(str(qdq_path))
    conv = next(n for n in qdq.graph.node if n.op_type == "Conv")
    edited = keep_float(qdq, float_model, {conv.name})
    producers = {out: n.op_type for n in edited.graph.node for out in n.output}
    new_conv = next(n for n in edited.graph.node if n.name == conv.name)
    assert producers.get(new_conv.input[0]) != "DequantizeLinear" and new_conv.input[0] == "x"
    weights = {i.name: i for i in edited.graph.initializer}
    float_weight = next(
        i
        for i in float_model.graph.initializer
        if i.name == next(n for n in float_model.graph.node if n.name == conv.name).input[1]
    )
    np.testing.assert_array_equal(
        onnx.numpy_helper.to_array(weights[new_conv.input[1]]), onnx.numpy_helper.to_array(float_weight)
    )
    count = lambda m: sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)  # noqa: E731
    assert count(edited) == count(qdq) - 3  # the input's Q and DQ, the weight's DQ
    onnx.save(edited, tmp_path / "edited.onnx")
    feeds = {"x": rng.standard_normal((4, 3, 16, 16)).astype(np.float32)}
    reference = run_onnx(path, feeds)[0]
    error = {p: np.abs(run_onnx(p, feeds)[0] - reference).max() for p in (qdq_path, tmp_path / "edited.onnx")}
    assert error[tmp_path / "edited.onnx"] < error[qdq_path]


OUTLIER = """model:
  source: models.py:make_outlier_mlp
  inputs:
    - {name: x, shape: [batch, 16]}"""


def mixed_recipe(write_recipe, build: str = "build: []"):
    return write_recipe(
        model=OUTLIER,
        quantization="quantization: {precision: int8, calibration: {samples: 64}, mixed: {samples: 32}}",
        validate="validate: {samples: 96, batch_size: 32, gates: {cosine_min: '>= 0.9'}, prune_ratio: null}",
        build=build,
    )


@pytest.mark.xfail(
    Machine.here().bf16,
    reason="open bug (#14): on a 2-core AMX Xeon the candidate the search found (kept: 'out') passed "
    "the tuning samples but failed the held-out ones (cosine_min 0.8699 < 0.9); not yet explained",
    strict=False,
)
def test_target_cpu_adds_a_mixed_candidate_when_int8_misses_the_gates(write_recipe, tmp_path, fake_probe):
    """OutlierMLP breaks per-tensor INT8 (both INT8 candidates fail the worst-sample gate): the
    search keeps a few layers in float on OpenVINO (a fake probe makes its INT8 the fastest), the
    candidate passes on the held-out samples, enters the ranking with its layers, and
    recipe-patch.yaml lists them; failing candidates are not benchmarked."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    probed = fake_probe({"ov-nncf-int8": 1.0, "ort-int8": 2.0}, 3.0)
    run = tmp_path / "run"
    report = run_recipe(load_recipe(mixed_recipe(write_recipe), ["target=cpu"]), run, SilentUI()).to_dict()
    assert report["verdict"] == "pass"
    # The INT8 candidates, before the search (on a BF16 CPU also NNCF's with its float ops in BF16).
    bf16 = ["ov-nncf-int8-bf16"] if Machine.here().bf16 else []
    assert probed == [["ort-int8", "ov-nncf-int8", *bf16]]
    mixed = report["quantization"]["mixed_precision"]
    assert mixed["source"] == {
        "artifact": "quantized_nncf",
        "engine": "ov-nncf-int8",
        "probe_ms": {"ort-int8": 2.0, "ov-nncf-int8": 1.0, **dict.fromkeys(bf16, 3.0)},
    }
    assert mixed["status"] == "found" and mixed["engine"] == "ov-mixed"
    assert mixed["initial_failed"][0].startswith("cosine_min")
    assert mixed["kept_float"]["modules"] and len(mixed["kept_float_nodes"]) < 6  # a few, not all
    ranking = {row["engine"]: row for row in report["selection"]["ranking"]}
    assert ranking["ov-mixed"]["passed"] and ranking["ov-mixed"]["kept_float"] == mixed["kept_float"]
    assert ranking["ov-mixed"]["p50_ms"] is not None
    failed = ranking["ov-nncf-int8"]
    assert not failed["passed"] and failed["p50_ms"] is None and "not benchmarked" in failed["reason"]
    metrics = {e["engine"]: e["metrics"] for e in report["validation"]["engines"]}
    assert metrics["ov-mixed"]["cosine_min"] >= 0.9 > metrics["ov-nncf-int8"]["cosine_min"]
    assert metrics["ov-mixed"]["cosine"] >= metrics["ov-mixed"]["cosine_min"]
    # Tuned on the first 32 validation samples, judged on the 96 after them.
    assert report["validation"]["tuning_samples"] == {"first": 0, "count": 32}
    assert report["validation"]["held_out_samples"] == {"first": 32, "count": 96}
    patch = (run / "recipe-patch.yaml").read_text()
    assert all(module in patch for module in mixed["kept_float"]["modules"])
    # The patch says whether the quantizer passed given only these exclusions.
    requantized = mixed["margins"]["requantized"]
    said = "passed on the tuning samples too" if requantized >= 0 else "MISSED the gates"
    assert said in patch and (requantized >= 0) == mixed["artifact_from"].endswith("layers excluded")
    stages = [s["name"] for s in report["stages"]]
    assert stages.index("quantize:int8-nncf") < stages.index("quantize:mixed") < stages.index("validate")


def test_the_search_starts_from_the_int8_candidate_measured_fastest(write_recipe, tmp_path, fake_probe):
    """A fake probe makes ONNX Runtime's INT8 the fastest (as ViT-B/16 measured on this project's
    AVX2 CPU): the search runs on it, the candidate is ort-mixed, and a rerun reads the choice back
    instead of probing again (so two close engines cannot flip between runs)."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    probed = fake_probe({"ort-int8": 1.0, "ov-nncf-int8": 2.0}, 3.0)
    # ort-int8 is the recipe's own engine here, as in recipes/vit-b16.yaml: it is measured too.
    own = "build: [{name: ort-int8, engine: onnxruntime, artifact: quantized}]"
    recipe = load_recipe(mixed_recipe(write_recipe, build=own), ["target=cpu"])
    report = run_recipe(recipe, tmp_path / "run", SilentUI()).to_dict()
    mixed = report["quantization"]["mixed_precision"]
    assert mixed["source"]["engine"] == "ort-int8" and mixed["source"]["artifact"] == "quantized"
    # Searched on ORT (per-tensor INT8 of this model is far off there: whether a set is found
    # within the trials is ORT's business); the candidate is built only when one is.
    assert mixed["engine"] == "ort-mixed" and mixed["initial_failed"], mixed
    labels = {row["engine"] for row in report["selection"]["ranking"]}
    assert ("ort-mixed" in labels) == (mixed["status"] == "found") and "ov-mixed" not in labels
    stage = next(s for s in report["stages"] if s["name"] == "probe:int8")
    assert stage["details"]["cached"] is False and len(probed) == 1
    again = run_recipe(recipe, tmp_path / "again", SilentUI()).to_dict()
    assert len(probed) == 1 and again["quantization"]["mixed_precision"]["source"]["engine"] == "ort-int8"
    assert next(s for s in again["stages"] if s["name"] == "probe:int8")["details"]["cached"] is True


def test_mixed_candidate_in_the_plan():
    """BF16 CPUs keep the layers in BF16 (and try the INT8 artifact with BF16 leftovers); others
    FP32; without OpenVINO+NNCF the candidate runs on ONNX Runtime; mixed.enabled false: none."""
    from optcli.plan import Machine, make_plan
    from optcli.recipe import parse_recipe

    text = (
        "name: t\nmodel: {source: m.py:f, inputs: [{name: x, shape: [batch, 4]}]}\ntarget: cpu\n"
        "quantization: {precision: int8}\nvalidate: {gates: {cosine_min: '>= 0.99'}}\n"
    )
    recipe = parse_recipe(text)
    both = frozenset({"nncf", "openvino"})

    def configs(machine, r=recipe):
        return {e.label: e.config for e in make_plan(r, machine).engines}

    bf16 = configs(Machine(("avx512_bf16",), both))
    assert bf16["ov-mixed"].precision_hint == "bf16" and bf16["ov-mixed"].artifact == "quantized_mixed"
    assert bf16["ov-nncf-int8-bf16"].precision_hint == "bf16"
    plain = configs(Machine(("avx2",), both))
    assert plain["ov-mixed"].precision_hint == "f32" and "ov-nncf-int8-bf16" not in plain
    assert configs(Machine(("avx2",), frozenset()))["ort-mixed"].artifact == "quantized_mixed"
    off = parse_recipe(text.replace("{precision: int8}", "{precision: int8, mixed: {enabled: false}}"))
    assert not any("mixed" in label for label in configs(Machine(("avx2",), both), off))
    assert "quantize:mixed" in make_plan(recipe, Machine(("avx2",), both)).stages
    # Moved onto a recipe's own INT8 engine, the mixed candidate leaves that engine's gates behind.
    from optcli.backends.onnxruntime import OnnxRuntimeConfig
    from optcli.plan import mixed_candidate

    own = OnnxRuntimeConfig(name="int8", artifact="quantized", gates={"speedup": ">= 4"}, threads=1)
    moved = mixed_candidate(own, Machine(("avx2",), both))
    assert (moved.name, moved.artifact, moved.gates, moved.threads) == ("ort-mixed", "quantized_mixed", {}, 1)


def test_layer_ranking_runs_on_the_samples_int8_gets_most_wrong():
    from optcli.quantization.mixed_precision import sample_cosines, worst_samples

    batches = [{"x": np.arange(3, dtype=np.float32)[:, None] + [[0.0]]}, {"x": np.array([[3.0], [4.0]])}]
    reference = [np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])]
    produced = [np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])]  # cosines 1, 0, 0.707
    cosines = [*sample_cosines(reference, produced), 0.5, float("nan")]
    assert cosines[:3] == pytest.approx([1.0, 0.0, 2**-0.5])
    (picked,) = worst_samples(batches, cosines, 3)
    assert picked["x"][:, 0].tolist() == [1.0, 3.0, 4.0]  # NaN (non-finite) first, kept in stream order
