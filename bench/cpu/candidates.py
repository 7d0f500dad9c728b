"""Engines under test: load once, then `run` (accuracy, first output) and `timed` (one call, latency)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Candidate:
    label: str
    run: Callable[[dict[str, np.ndarray]], np.ndarray]  # feeds -> first output (for accuracy)
    timed: Callable[[], Any]  # one call on the prepared timing feeds (for latency)
    note: str = ""
    close: Callable[[], None] = lambda: None
    p50s: list[list[float]] = field(default_factory=list)  # per pass: one p50 per round


def torch_candidate(
    label: str, module: Any, input_names: list[str], feeds: dict, note: str = ""
) -> Candidate:
    import torch

    def call(arrays: dict[str, np.ndarray]) -> Any:
        with torch.inference_mode():
            return module(*[torch.from_numpy(np.ascontiguousarray(arrays[n])) for n in input_names])

    bound = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in input_names]

    def timed() -> Any:
        with torch.inference_mode():
            return module(*bound)

    def run(arrays: dict[str, np.ndarray]) -> np.ndarray:
        out = call(arrays)
        out = out[0] if isinstance(out, (tuple, list)) else out
        return out.detach().float().numpy()

    return Candidate(label, run, timed, note)


def compiled_torch(model: Any, dtype: str) -> Any:
    import torch

    if dtype == "fp32":
        return torch.compile(model)

    def forward(*args: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(*args)

    return torch.compile(forward)


def best_compiled(model: Any, input_names: list[str], feeds: dict, *, trial_calls: int) -> Candidate:
    """torch.compile in fp32 and with bf16 autocast; the faster in a short trial competes."""
    trials = {}
    for dtype in ("fp32", "bf16"):
        t = time.perf_counter()
        c = torch_candidate(f"torch-compile-{dtype}", compiled_torch(model, dtype), input_names, feeds)
        c.timed()  # compiles
        compile_s = time.perf_counter() - t
        trial = []
        for _ in range(trial_calls):
            s = time.perf_counter()
            c.timed()
            trial.append(time.perf_counter() - s)
        trials[dtype] = (statistics.median(trial) * 1000.0, compile_s, c)
    best = min(trials, key=lambda d: trials[d][0])
    compile_note = ", ".join(
        f"{d}: {p50:.1f} ms trial p50, {s:.0f} s to compile" for d, (p50, s, _) in trials.items()
    )
    chosen = trials[best][2]
    chosen.note = f"chosen by a trial ({compile_note})"
    return chosen


def ort_candidate(label: str, path: Path, threads: int | None, feeds: dict, note: str = "") -> Candidate:
    from optcli.ort_session import create_session

    session = create_session(path, threads=threads)  # ORT's defaults otherwise: level all, spinning
    names = [i.name for i in session.get_inputs()]
    bound = {n: np.ascontiguousarray(feeds[n]) for n in names}
    return Candidate(
        label,
        run=lambda arrays: session.run(None, {n: arrays[n] for n in names})[0],
        timed=lambda: session.run(None, bound),
        note=note,
    )


def ov_candidate(label: str, model: Any, threads: int | None, feeds: dict, note: str = "") -> Candidate:
    import openvino as ov

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(model, "CPU", config)
    names = [port.get_any_name() for port in compiled.inputs]
    run_request = compiled.create_infer_request()
    timed_request = compiled.create_infer_request()
    arrays_bound = [np.ascontiguousarray(feeds[n]) for n in names]
    for name, array in zip(names, arrays_bound):
        timed_request.set_tensor(name, ov.Tensor(array, shared_memory=True))
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def run(arrays: dict[str, np.ndarray]) -> np.ndarray:
        result = run_request.infer({n: np.ascontiguousarray(arrays[n]) for n in names})
        return np.array(result[compiled.outputs[0]])

    return Candidate(
        label,
        run,
        timed=lambda: timed_request.infer(share_outputs=True),
        note=(note + "; " if note else "") + f"OpenVINO default float precision: {precision}",
    )


def optcli_candidate(recipe: Any, report: dict, run_dir: Path, feeds: dict) -> Candidate:
    """The engine optcli chose, rebuilt from the run's manifest with the plan's own engine config."""
    from optcli.backends import EngineContext, create_engine
    from optcli.manifest import read_manifest
    from optcli.plan import Machine, make_plan

    selection = report.get("selection") or {}
    chosen = selection.get("chosen")
    if not chosen:
        raise RuntimeError(f"optcli chose no engine (selection: {selection})")
    configs = {e.label: e.config for e in make_plan(recipe, Machine.here()).runnable}
    config = configs[chosen]
    artifacts = read_manifest(run_dir)  # digests re-checked: the files are the ones the run judged
    context = EngineContext(
        artifacts={name: a.path for name, a in artifacts.items()},
        precisions={name: a.precision for name, a in artifacts.items()},
        torch_model=lambda: None,
        input_names=[s.name for s in recipe.model.inputs],
        output_names=list(recipe.model.outputs or []),
    )
    engine = create_engine(config, context).load()
    bound = engine.bind(feeds)
    ranking = {row["engine"]: row for row in selection.get("ranking", [])}
    row = ranking.get(chosen, {})
    return Candidate(
        f"optcli: {chosen}",
        run=lambda arrays: engine.run(arrays)[0],
        timed=lambda: engine.run_bound(bound),
        note=f"optcli's own benchmark: {row.get('p50_ms', float('nan')):.2f} ms p50",
        close=engine.close,
    )
