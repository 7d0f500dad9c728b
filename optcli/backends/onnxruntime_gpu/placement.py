"""Which execution provider ran each node (from ORT's profile), and when that means a silent CPU fallback."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from optcli.backends.onnxruntime_gpu.config import CPU


@dataclass(frozen=True)
class Placement:
    """Nodes and kernel time (us) per execution provider in one profiled run."""

    nodes: dict[str, int]
    time_us: dict[str, int]

    def share(self, provider: str) -> float:
        """Share of kernel time (of node count when no time was recorded) that ran on `provider`."""
        counts = self.time_us if sum(self.time_us.values()) else self.nodes
        total = sum(counts.values())
        return counts.get(provider, 0) / total if total else 0.0


def node_placement(events: list[dict[str, Any]]) -> Placement:
    """Which provider ran each node, from ORT's profiling JSON (enable_profiling; a Chrome trace).

    Node events have cat 'Node', name '<node>_kernel_time' and args.provider (as in a real ORT 1.32
    profile). Only the last 'model_run' counts: the first run can include TensorRT engine builds.
    """
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    last = max(runs, key=lambda e: e.get("ts", 0)) if runs else None
    provider_of: dict[str, str] = {}
    time_us: Counter[str] = Counter()
    for event in events:
        name, provider = str(event.get("name", "")), (event.get("args") or {}).get("provider")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time") or not provider:
            continue
        if last and not last["ts"] <= event.get("ts", 0) <= last["ts"] + last.get("dur", 0):
            continue
        provider_of[name.removesuffix("_kernel_time")] = provider
        time_us[provider] += int(event.get("dur", 0))
    return Placement(dict(Counter(provider_of.values())), dict(time_us))


def fallback_problem(
    requested: str, active: list[str], placement: Placement | None, max_cpu: float
) -> str | None:
    """Why the session is not really running on `requested`, or None."""
    if requested not in active:
        return f"ONNX Runtime did not enable {requested}; the session runs on {', '.join(active)}"
    if placement is None:
        return None
    if not placement.nodes.get(requested):
        return f"no node ran on {requested} (nodes per provider: {placement.nodes})"
    if (cpu := placement.share(CPU)) > max_cpu:
        return f"{cpu:.0%} of node time ran on the CPU provider (nodes per provider: {placement.nodes})"
    return None
