"""One table from optcli report.json files: engine, precision, batch, p50, speedup vs eager FP32 on the
same GPU, cosine. Used by scripts/gpu_check.sh; stdlib only, so it runs with any Python.

A speedup is printed only when the report's baseline ran on a GPU: a speedup against a CPU baseline
is not "vs eager FP32 on the same GPU", so it shows as n/a with the reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HEADER = ("run", "engine", "precision", "batch", "p50 ms", "speedup", "cosine", "device")


def rows(report: dict[str, Any], run: str) -> list[tuple[str, ...]]:
    engines = {e["label"]: e for e in report.get("engines") or []}
    baseline = next((e for e in engines.values() if e.get("baseline")), {})
    on_gpu = baseline.get("device", "cpu") != "cpu"
    cosine = {
        e["engine"]: e["metrics"].get("cosine")
        for e in (report.get("validation") or {}).get("engines", [])
        if e.get("metrics")
    }
    out = []
    for result in (report.get("benchmark") or {}).get("results", []):
        label = result["engine"]
        engine = engines.get(label, {})
        speedup = f"{result['speedup']:.2f}x" if on_gpu and result.get("speedup") else "n/a (cpu baseline)"
        value = 1.0 if engine.get("baseline") else cosine.get(label)
        out.append(
            (
                run,
                label,
                str(engine.get("precision_detail") or engine.get("precision", "?")),
                str(result["batch_size"]),
                f"{result['latency_ms']['p50']:.3f}",
                speedup,
                f"{value:.5f}" if isinstance(value, float) else "-",
                str(engine.get("device", "?")),
            )
        )
    return out


def table(paths: list[Path]) -> str:
    lines: list[tuple[str, ...]] = [HEADER]
    missing = []
    for path in paths:
        run = path.parent.name
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            missing.append(f"{run}: no report.json (the run did not get that far)")
            continue
        lines += rows(report, run)
        if report.get("verdict") != "pass":
            error = report.get("error") or ""
            why = error.get("message", "") if isinstance(error, dict) else str(error)
            missing.append(f"{run}: verdict {report.get('verdict')}" + (f" ({why})" if why else ""))
        if (report.get("selection") or {}).get("chosen"):
            missing.append(f"{run}: target chose {report['selection']['chosen']}")
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
    return "\n".join(text + missing)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: gpu_table.py REPORT.json...")
    print(table([Path(p) for p in sys.argv[1:]]))
