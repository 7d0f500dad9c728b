"""`target: cpu`: build every available candidate for the target, then keep the fastest that passes.

Candidates are ordinary engines added to the build list; the quantize stage adds an NNCF-quantized
artifact for OpenVINO when NNCF is installed. After validation and benchmark, the candidates are
ranked by p50 latency at the first benchmark batch size; the chosen one's gates decide the verdict,
the others' gates stay in the report as information with the reason each lost.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from optcli.backends import Engine, unavailable
from optcli.backends.onnxruntime import OnnxRuntimeConfig
from optcli.backends.openvino_engine import OpenVINOConfig
from optcli.environment import cpu_flags
from optcli.stages.context import Run


def wants_nncf_artifact(run: Run) -> bool:
    quantization = run.recipe.quantization
    return (
        run.recipe.target is not None
        and quantization is not None
        and quantization.precision == "int8"
        and quantization.quantizer != "nncf"
        and importlib.util.find_spec("nncf") is not None
        and importlib.util.find_spec("openvino") is not None
    )


def cpu_candidates(run: Run) -> list[Any]:
    """Engine configs for the CPU target, in the order they are tried."""
    float_artifact = "optimized" if run.recipe.passes else "exported"
    quantization = run.recipe.quantization
    int8 = quantization is not None and quantization.precision == "int8"
    bf16 = any(flag.startswith(("avx512_bf16", "amx_bf16")) for flag in cpu_flags())
    candidates: list[Any] = [OnnxRuntimeConfig(name="ort-fp32", artifact=float_artifact)]
    if int8:
        candidates.append(OnnxRuntimeConfig(name="ort-int8", artifact="quantized"))
    candidates.append(OpenVINOConfig(name="ov-fp32", artifact=float_artifact, precision_hint="f32"))
    if bf16:
        candidates.append(OpenVINOConfig(name="ov-bf16", artifact=float_artifact, precision_hint="bf16"))
    if int8 and quantization.quantizer == "nncf":
        candidates.append(OpenVINOConfig(name="ov-int8", artifact="quantized", precision_hint="f32"))
    elif wants_nncf_artifact(run):
        # f32 hint: on CPUs without AMX the leftover float ops are slower in bf16 (measured).
        candidates.append(
            OpenVINOConfig(name="ov-nncf-int8", artifact="quantized_nncf", precision_hint="f32")
        )
    return candidates


def add_candidates(run: Run) -> None:
    """Append the target's available candidates to the runnable build list (called by preflight)."""
    taken = {config.name or config.engine for config in run.runnable_build}
    added, missing = [], []
    for config in cpu_candidates(run):
        if config.name in taken:
            continue
        problem = unavailable(config)
        if problem is None:
            run.runnable_build.append(config)
            added.append(config.name)
        else:
            missing.append({"engine": config.name, "reason": problem.reason, "fix": problem.fix})
    # The recipe's own engines compete too: the choice is among everything that was built.
    everyone = [config.name or config.engine for config in run.runnable_build]
    run.report.selection = {"target": "cpu", "candidates": everyone, "added": added, "not_available": missing}


def select(run: Run, engines: list[Engine]) -> None:
    """Rank the candidates, choose the fastest passing one, and make the others' gates informational."""
    candidates = set(run.report.selection.get("candidates", []))
    batch = run.recipe.benchmark.batch_sizes[0]
    latency = {r["engine"]: r for r in run.report.benchmark.get("results", []) if r["batch_size"] == batch}
    rows = []
    for engine in engines:
        if engine.label not in candidates:
            continue
        failed = [
            g
            for g in run.report.gates
            if g.engine == engine.label and g.name.startswith("validate.") and not g.passed
        ]
        result = latency.get(engine.label)
        rows.append(
            {
                "engine": engine.label,
                "precision": engine.precision,
                "p50_ms": result["latency_ms"]["p50"] if result else None,
                "speedup": result["speedup"] if result else None,
                "passed": not failed,
                "failed_gates": [
                    f"{g.name} {g.value:.4g} (needs {g.threshold})" if g.value is not None else g.name
                    for g in failed
                ],
            }
        )
    rows.sort(key=lambda r: (not r["passed"], r["p50_ms"] if r["p50_ms"] is not None else float("inf")))
    chosen = next((r for r in rows if r["passed"] and r["p50_ms"] is not None), None)
    for row in rows:
        row["reason"] = _reason(row, chosen)
    if chosen is not None:  # with no passing candidate every gate counts, and the run fails
        for gate in run.report.gates:
            if gate.engine in candidates and gate.engine != chosen["engine"]:
                gate.counts = False
    run.report.selection.update(
        {"batch_size": batch, "ranking": rows, "chosen": chosen["engine"] if chosen else None}
    )
    if chosen is None:
        run.report.warnings.append("target cpu: no candidate passed the validate gates")


def _reason(row: dict[str, Any], chosen: dict[str, Any] | None) -> str:
    if chosen is not None and row["engine"] == chosen["engine"]:
        return "chosen: fastest that passes the validate gates"
    if not row["passed"]:
        return "failed " + "; ".join(row["failed_gates"])
    if chosen is not None and row["p50_ms"] is not None:
        return f"slower: {row['p50_ms'] / chosen['p50_ms']:.2f}x the chosen engine's p50"
    return "no latency measured"
