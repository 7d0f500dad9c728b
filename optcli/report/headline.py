"""The one-line summary a PR comment and a CI summary lead with: what to deploy and what it buys."""

from __future__ import annotations

from typing import Any

from optcli.report.tables import fmt, gate_failed, number, speedup_text


def deployed(report: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """What the headline names and how: ("deploy", engine) for a passing run's --target choice or
    its one artifact (what `optcli run` prints as the artifact to deploy); else the fastest
    candidate whose gates all passed, else the fastest one, so a failing report still says what
    it measured."""
    engines = [e for e in report.get("engines") or [] if not e.get("baseline")]
    chosen = (report.get("selection") or {}).get("chosen")
    if chosen:
        engine = next((e for e in engines if e.get("label") == chosen), {"label": chosen})
        return ("deploy" if report.get("verdict") == "pass" else "chosen"), engine
    if not engines:
        return "", None
    if report.get("verdict") == "pass" and len({e.get("path") for e in engines}) == 1:
        return "deploy", engines[0]
    failed = {g.get("engine") for g in report.get("gates") or [] if gate_failed(g)}
    passing = [e for e in engines if e.get("label") not in failed]
    best = max(
        passing or engines, key=lambda e: number((_speed(report, e["label"]) or {}).get("speedup")) or 0
    )
    return ("fastest passing" if passing else "fastest (failing)"), best


def _speed(report: dict[str, Any], label: str) -> dict[str, Any] | None:
    """The engine's benchmark result at the first (selection's) batch size."""
    results = [r for r in (report.get("benchmark") or {}).get("results", []) if r.get("engine") == label]
    batch = (report.get("selection") or {}).get("batch_size")
    return next((r for r in results if r.get("batch_size") == batch), results[0] if results else None)


def size_text(count: Any) -> str:
    count = number(count)
    if not isinstance(count, (int, float)):
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return "?"


def _accuracy(report: dict[str, Any], label: str) -> str | None:
    validation = report.get("validation") or {}
    entry = next((e for e in validation.get("engines", []) if e.get("engine") == label), None)
    if entry is None:
        return None
    metrics = entry.get("metrics") or {}
    base = number((validation.get("baseline") or {}).get("accuracy"))
    mine = number(metrics.get("accuracy"))
    if isinstance(base, float) and isinstance(mine, float):
        return f"accuracy {100 * mine:.2f}% ({100 * (mine - base):+.2f} pp)"
    if metrics.get("top1_agreement") is not None:
        return f"top-1 agreement {100 * number(metrics['top1_agreement']):.2f}%"
    return f"cosine {fmt(metrics.get('cosine'), 6)}" if metrics.get("cosine") is not None else None


def _size(report: dict[str, Any], engine: dict[str, Any]) -> str | None:
    artifacts = report.get("artifacts") or {}
    before = (artifacts.get("exported") or {}).get("bytes")
    after = (artifacts.get(engine.get("artifact") or "") or {}).get("bytes")
    if before is None or after is None:
        return None
    return f"size {size_text(before)} -> {size_text(after)}"


def headline(report: dict[str, Any]) -> str:
    """'deploy `ort-int8` (quantized.onnx, int8), 1.57x [1.41, 1.72] vs pytorch at batch 1, ...'."""
    word, engine = deployed(report)
    if engine is None:
        return "no candidate engine"
    label = engine.get("label", "?")
    where = ", ".join(
        part
        for part in (
            (report.get("artifacts") or {}).get(engine.get("artifact") or "", {}).get("path"),
            engine.get("precision_detail") or engine.get("precision"),
        )
        if part
    )
    parts = [f"{word} `{label}`" + (f" ({where})" if where else "")]
    speed = _speed(report, label)
    if speed is not None:
        baseline = (report.get("benchmark") or {}).get("baseline", "baseline")
        parts.append(f"{speedup_text(speed)} vs {baseline} at batch {speed.get('batch_size')}")
    for extra in (_accuracy(report, label), _size(report, engine)):
        if extra:
            parts.append(extra)
    return ", ".join(parts)


VERSIONED = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "openvino", "nvidia-modelopt")


def versions_text(report: dict[str, Any]) -> str:
    """optcli, torch, onnx and each engine's runtime, as the run found them."""
    packages = (report.get("environment") or {}).get("packages") or {}
    parts = [f"optcli {report.get('optcli_version', packages.get('optcli', '?'))}"]
    parts += [f"{name} {packages[name]}" for name in VERSIONED if name in packages]
    for engine in report.get("engines") or []:
        runtime = engine.get("runtime")
        if runtime and runtime.split(" ")[0] not in packages and runtime not in parts:
            parts.append(runtime)
    return ", ".join(parts)


def noisy_text(report: dict[str, Any]) -> str | None:
    """Engines whose timings spread beyond benchmark.max_cv, and other processes' load on the CPUs
    the engines' threads needed: their speed numbers are not stable."""
    benchmark = report.get("benchmark") or {}
    noisy = [
        f"{r['engine']} at batch {r.get('batch_size')} (CV {fmt((r.get('spread') or {}).get('cv'), 3)})"
        for r in benchmark.get("results", [])
        if r.get("noisy")
    ]
    load = benchmark.get("machine_load") or {}
    if load.get("contended"):
        noisy.append(
            f"other processes kept {fmt(load.get('other_cores'), 2)} of {load.get('cpus')} CPUs busy "
            f"while engines ran {load.get('threads')} threads"
        )
    return "noisy measurement: " + ", ".join(noisy) if noisy else None
