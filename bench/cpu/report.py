"""The suite's Markdown: one table over all models, a summary line per model, notes."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def environment_meta(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    import onnxruntime
    import openvino
    import torch

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.get_version().split("-")[0],
        },
        "passes": args.passes,
        "rounds": args.rounds,
        "iters": args.iters,
        "smoke": args.smoke,
        "seconds": round(seconds, 1),
    }


def fastest(rows: list[dict[str, Any]], *, passing: bool) -> dict[str, Any] | None:
    """The fastest by-hand peer (not the baseline, not optcli's), optionally only among those that
    pass the recipe's gates."""
    peers = [
        r
        for r in rows
        if r["failed_gates"] is not None
        and not r["engine"].startswith("optcli")
        and (not passing or not r["failed_gates"])
    ]
    return min(peers, key=lambda r: statistics.mean(r["p50_ms"]), default=None)


def title(result: dict[str, Any], threads: bool = False) -> str:
    """The model, with its thread count when the suite ran more than one."""
    return f"{result['model']} @{result['threads']}t" if threads else result["model"]


def stage_times(result: dict[str, Any]) -> str:
    seconds = result["seconds"]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in seconds.get("optcli_stages", {}).items())
    return f"optcli wall {seconds.get('optcli_wall', float('nan')):.1f} s, model load excluded ({stages})"


def summary_line(result: dict[str, Any], threads: bool = False) -> str:
    rows = result["rows"]
    ours = next(r for r in rows if r["engine"].startswith("optcli"))
    ours_ms = statistics.mean(ours["p50_ms"])
    parts = []
    for passing in (False, True):
        peer = fastest(rows, passing=passing)
        if peer is None:
            parts.append("no by-hand peer passes the recipe's gates" if passing else "no by-hand peer")
            continue
        if passing and peer is fastest(rows, passing=False):
            continue
        ratio = ours_ms / statistics.mean(peer["p50_ms"])
        verdict = (
            f"optcli's is {ratio:.2f}x its p50 ({'slower' if ratio > 1 else 'faster or equal'})"
            if abs(ratio - 1) >= 0.03
            else f"optcli's is within 3% ({ratio:.2f}x)"
        )
        gates = (
            "passes the recipe's gates"
            if not peer["failed_gates"]
            else "fails " + "; ".join(peer["failed_gates"])
        )
        parts.append(
            f"fastest {'passing ' if passing else ''}by-hand peer {peer['engine']} "
            f"({statistics.mean(peer['p50_ms']):.2f} ms, {gates}): {verdict}"
        )
    own_gates = "passes" if not ours["failed_gates"] else "fails " + "; ".join(ours["failed_gates"])
    return (
        f"- **{title(result, threads)}**: {ours['engine']} {ours_ms:.2f} ms ({own_gates} here); "
        + "; ".join(parts)
        + "."
    )


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    threads = sorted({r["threads"] for r in results}, key=str)
    multi = len(threads) > 1
    smoke_note = " (SMOKE: tiny counts, numbers mean nothing)"
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        "# CPU suite: optcli's chosen artifact vs by-hand peers",
        "",
        f"Measured on this {meta['cores']}-core machine ({meta['cpu']}), "
        f"{' / '.join(str(t) for t in threads)} thread(s) per engine, batch 1; {versions}. "
        f"p50 ms per pass = median over {meta['rounds']} interleaved rounds of the p50 of {meta['iters']} "
        f"calls; speedup = eager p50 / engine p50 (mean of the passes). Cosine: per sample vs eager FP32 "
        f"(mean, worst) on held-out inputs never used for calibration; gates: the recipe's validate gates "
        f"on these samples (cosine over all outputs, as optcli computes it). Suite run time "
        f"{meta['seconds'] / 60:.1f} min{smoke_note if meta['smoke'] else ''}.",
        "",
        "| model | engine | p50 ms pass 1 | p50 ms pass 2 | speedup | cosine (mean / worst) "
        "| top-1 agreement | gates |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        for row in result["rows"]:
            p50 = row["p50_ms"] + [float("nan")] * (2 - len(row["p50_ms"]))
            top1 = row.get("top1_agreement")
            failed = row.get("failed_gates")
            gates = "baseline" if failed is None else ("pass" if not failed else "FAIL " + "; ".join(failed))
            lines.append(
                f"| {title(result, multi)} | {row['engine']} | {p50[0]:.2f} | {p50[1]:.2f} "
                f"| {row['speedup']:.2f}x "
                f"| {row['cosine']:.4f} / {row['cosine_min']:.4f} "
                f"| {'-' if top1 is None else f'{top1:.1%}'} | {gates} |"
            )
    lines += ["", "optcli's artifact against the fastest by-hand peer (mean of the two passes):", ""]
    lines += [summary_line(result, multi) for result in results]
    lines += ["", "Notes per model:", ""]
    for result in results:
        feeds = ", ".join(f"{k} {v}" for k, v in result["timing_feeds"].items())
        ranking = "; ".join(
            f"{r['engine']} {r['p50_ms']:.2f} ms{'' if r['passed'] else ' (failed gates)'}"
            for r in result["ranking"]
            if r.get("p50_ms") is not None
        )
        gates = ", ".join(f"{k} {v}" for k, v in result.get("gates", {}).items())
        lines.append(
            f"- **{title(result, multi)}** (`{result['recipe']}`"
            f"{', --set ' + ' --set '.join(result['overrides']) if result['overrides'] else ''}; "
            f"gates {gates}): "
            f"timing input {feeds}; accuracy on {result['accuracy_samples']} held-out samples; "
            f"{result['calibration_samples']} calibration samples for every quantizer. optcli chose "
            f"`{result['chosen']}` (verdict {result['verdict']}); its own benchmark ranking: {ranking}. "
            f"{stage_times(result)}. Suite time for the model {result['seconds']['total'] / 60:.1f} min."
        )
        for row in result["rows"]:
            if row["note"]:
                lines.append(f"  - {row['engine']}: {row['note']}")
    return "\n".join(lines) + "\n"
