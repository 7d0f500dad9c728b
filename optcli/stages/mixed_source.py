"""Which INT8 candidate the mixed-precision search starts from: the fastest one, measured here.

The search keeps some layers of an INT8 candidate in float, so what it finds runs no faster than
that candidate. It is worth searching only on the fastest INT8 candidate, and only when that one
misses the gates. Which INT8 engine is fastest depends on the CPU and the model. On this project's
2-core AVX2 EPYC at 1 thread, ResNet-50 ran at 54 ms on OpenVINO+NNCF INT8 and 104 ms on ONNX
Runtime INT8. ViT-B/16 went the other way: 774 ms and 436 ms. There the plan's fixed choice
(OpenVINO) spent 133 s searching for a candidate that could not have won. So after the
quantizers, the INT8 candidates are loaded and timed by the target's latency probe, and the
fastest one's engine and artifact are the search's. The choice is cached per machine (CPU,
artifacts, engine settings), so a rerun neither probes again nor flips between two close engines.
`stages.mixed.mixed_inputs` then gathers what the search needs from that choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from optcli.artifacts import Artifact
from optcli.backends import create_engine
from optcli.cache import make_key
from optcli.plan import Machine, Plan, mixed_candidate, mixed_source
from optcli.stages.context import StageContext

INT8_ARTIFACTS = ("quantized", "quantized_nncf")
CPU_ENGINES = ("onnxruntime", "openvino")  # the engines mixed candidates run on (plan.mixed_candidate)


@dataclass
class MixedSource:
    artifact: str  # the INT8 artifact the search starts from
    int8_engine: str  # the label of the INT8 candidate that runs it
    probe_ms: dict[str, float] | None  # None: not measured (one INT8 candidate, or no latency probe)
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "engine": self.int8_engine, "probe_ms": self.probe_ms}


def choose_mixed_source(
    ctx: StageContext,
    plan: Plan,
    artifacts: dict[str, Artifact],
    context,
    probe,
    hardware: dict[str, Any],
    machine: Machine,
) -> MixedSource:
    """The fastest INT8 candidate by `probe` (the target's latency probe; None: the plan's choice),
    with the plan's mixed candidate moved onto its engine. `context`: the EngineContext the INT8
    candidates load from."""
    # The recipe's own engines count too (ResNet-50's and ViT-B/16's recipes build ort-int8).
    int8 = [e for e in plan.runnable if e.artifact in INT8_ARTIFACTS and e.config.engine in CPU_ENGINES]
    planned = mixed_source(plan.artifacts)
    if probe is None or len(int8) < 2:
        chosen = next((e for e in reversed(int8) if e.artifact == planned), None)
        return MixedSource(planned, chosen.label if chosen else "", None)
    key = make_key(
        "mixed-source",
        {
            "engines": [e.config.model_dump(mode="json", exclude={"gates"}) for e in int8],
            "artifacts": {e.artifact: artifacts[e.artifact].sha256 for e in int8},
            "hardware": hardware,
            "versions": ctx.versions,
        },
    )
    entry = ctx.cache.get("mixed-source", key)
    with ctx.stage("probe:int8") as record:
        if entry is not None:
            chosen = next(e for e in int8 if e.label == entry.meta["engine"])
            source = MixedSource(chosen.artifact, chosen.label, entry.meta["probe_ms"], cached=True)
        else:
            engines = [create_engine(e.config, context) for e in int8]
            try:
                for engine in engines:
                    engine.load()
                probe_ms = probe(engines)
            finally:
                for engine in engines:
                    engine.close()
            chosen = min(int8, key=lambda e: probe_ms[e.label])
            source = MixedSource(chosen.artifact, chosen.label, probe_ms)
            ctx.cache.put("mixed-source", key, {}, {"engine": chosen.label, "probe_ms": probe_ms})
        record.details = {**source.to_dict(), "cached": source.cached, "cache_key": key}
    for planned in plan.engines:  # the mixed candidate moves onto that engine (its threads with it)
        if planned.artifact == "quantized_mixed":
            planned.config = mixed_candidate(chosen.config, machine)
    return source
