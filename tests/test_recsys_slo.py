"""The throughput-under-a-p99-budget search (optcli/slo.py): a fake engine with a known
latency(batch, threads) on a fake clock, and one real ONNX Runtime engine."""

from __future__ import annotations

import numpy as np
import pytest

from optcli.slo import SloSettings, feeds_of, sample_pool, search, slo_gates, with_speedups


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeEngine:
    """run_bound takes latency(batch, threads) ms of fake time; every 50th run twice that (a tail
    the p99 of 200 runs sees, so the budget is met iff 2 * latency <= p99_ms)."""

    def __init__(self, clock: FakeClock, threads: int | None, base_ms: float, per_sample_ms: float) -> None:
        self.clock, self.threads = clock, threads or 1
        self.base_ms, self.per_sample_ms = base_ms, per_sample_ms
        self.runs = 0
        self.bound_sizes: list[int] = []

    def latency_ms(self, batch: int) -> float:
        return self.base_ms + self.per_sample_ms * batch / self.threads

    def bind(self, feeds):
        batch = len(feeds["sparse"])
        self.bound_sizes.append(batch)
        return batch

    def run_bound(self, batch: int) -> None:
        self.runs += 1
        tail = 2.0 if self.runs % 50 == 0 else 1.0
        self.clock.now += tail * self.latency_ms(batch) / 1000.0

    def synchronize(self) -> None:
        pass


def _feeds():
    rng = np.random.default_rng(0)
    pool = {"dense": rng.standard_normal((300, 4), np.float32), "sparse": rng.integers(0, 99, (300, 3))}
    return feeds_of(pool)


def _settings(**changes) -> SloSettings:
    values = {
        "p99_ms": 10.0,
        "max_batch": 4096,
        "refine": 10,
        "threads": [1, 2],
        "warmup": 0,
        "iterations": 200,
    }
    return SloSettings(**{**values, **changes})


def test_largest_batch_and_best_threads_under_the_budget():
    clock = FakeClock()
    engines = {t: FakeEngine(clock, t, base_ms=0.5, per_sample_ms=0.011) for t in (1, 2)}
    result = search("fake", engines.__getitem__, _feeds(), _settings(), clock)
    # 2 * (0.5 + 0.011 b / t) <= 10  <=>  b <= 409.1 t
    by_threads = {t: max(p.batch_size for p in result.probes if p.threads == t and p.meets) for t in (1, 2)}
    assert by_threads == {1: 409, 2: 818}
    assert (result.batch_size, result.threads) == (818, 2)
    assert result.p99_ms == pytest.approx(2 * (0.5 + 0.011 * 818 / 2))
    runs_ms = 204 * (0.5 + 0.011 * 818 / 2)  # 200 runs at batch 818, four of them twice as long
    assert result.throughput == pytest.approx(818 * 200 / (runs_ms / 1000))
    assert engines[2].bound_sizes[:11] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]  # doubling first
    assert not any(p.meets for p in result.probes if p.batch_size in (410, 512) and p.threads == 1)


def test_cap_and_infeasible_budgets():
    clock = FakeClock()
    fast = search(
        "fast", lambda t: FakeEngine(clock, t, 0.1, 0.0001), _feeds(), _settings(max_batch=3000), clock
    )
    assert fast.batch_size == 3000  # every size meets it: the cap is probed, not only its power of 2
    slow = search("slow", lambda t: FakeEngine(clock, t, 20.0, 0.01), _feeds(), _settings(), clock)
    assert slow.batch_size is None and slow.throughput == 0 and len(slow.probes) == 2  # batch 1, per setting
    with_speedups([fast, slow], baseline="fast")
    gates = slo_gates({"slo_speedup": ">= 1.5", "slo_throughput": ">= 1"}, [fast, slow], baseline="fast")
    assert [(g.name, g.passed) for g in gates] == [
        ("benchmark.slo_speedup", False),
        ("benchmark.slo_throughput", False),
    ]
    assert "no batch size meets p99 <= 10 ms" in gates[0].detail


def test_real_engine_probe(tmp_path):
    """The search drives a real ONNX Runtime engine through bind/run_bound with real samples."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from optcli.backends import EngineContext, create_engine
    from optcli.backends.onnxruntime import OnnxRuntimeConfig

    table = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32), "t"
    )
    graph = helper.make_graph(
        [helper.make_node("Gather", ["t", "sparse"], ["rows"])],
        "g",
        [helper.make_tensor_value_info("sparse", TensorProto.INT64, ["batch", 3])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", 3, 8])],
        [table],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "m.onnx")
    context = EngineContext(
        artifacts={"exported": str(tmp_path / "m.onnx")},
        precisions={"exported": "fp32"},
        torch_model=lambda: None,
        input_names=["sparse"],
        output_names=["rows"],
    )
    pool = sample_pool(
        iter([{"sparse": np.arange(30).reshape(10, 3), "labels": np.zeros(10)}]), ["sparse"], 8
    )
    assert pool["sparse"].shape == (8, 3) and "labels" not in pool
    with create_engine(OnnxRuntimeConfig(artifact="exported", threads=1), context) as engine:
        settings = _settings(p99_ms=1000.0, max_batch=16, threads=[None], iterations=5, time_budget_s=1)
        result = search(engine.label, lambda t: engine, feeds_of(pool), settings)
    assert result.batch_size == 16 and result.throughput > 0
    assert [p.batch_size for p in result.probes] == [1, 2, 4, 8, 16]


def test_a_single_spike_does_not_stop_the_search():
    """A batch whose first probe misses the budget is probed again; the better probe counts."""
    from optcli.slo import search_threads

    spiked = {256}  # the first probe of batch 256 sees a 50 ms stall, the second does not

    class SpikyEngine:  # a fake engine: latency 0.01 ms per sample on a fake clock, one stall
        label = "fake-spiky"

        def __init__(self):
            self.now, self.batch = 0.0, 1

        def clock(self):
            return self.now

        def bind(self, feeds):
            self.batch = len(next(iter(feeds.values())))
            self.stall = self.batch in spiked
            spiked.discard(self.batch)
            return feeds

        def run_bound(self, bound):
            self.now += self.batch * 1e-5 + (0.05 if self.stall else 0.0)

        def synchronize(self):
            pass

    engine = SpikyEngine()
    settings = SloSettings(p99_ms=10, max_batch=512, refine=0, warmup=0, iterations=5, time_budget_s=1)

    def feeds(batch: int) -> dict:
        return {"x": np.zeros((batch, 1), np.float32)}

    probes = search_threads(engine, feeds, None, settings, engine.clock)
    by_batch = {p.batch_size: p for p in probes}
    assert by_batch[256].meets and by_batch[256].attempts == 2
    assert by_batch[512].meets  # the search went on past the spike
    never = SloSettings(**{**settings.model_dump(), "confirm_misses": 0})
    spiked.add(256)
    again = SpikyEngine()
    probes = search_threads(again, feeds, None, never, again.clock)
    assert max(p.batch_size for p in probes if p.meets) == 128  # without confirmation the spike decides
