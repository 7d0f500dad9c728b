"""What else the machine did while the benchmark ran: other processes' CPU use, and VM steal time.

Timings taken while other processes keep CPUs busy depend on that load, most when the engines
run as many threads as there are CPUs (one of them then shares a core). The benchmark reads the
machine's CPU counters (Linux `/proc/stat`) and this process's own CPU time before and after
measuring; the difference is what other processes (and the hypervisor, as steal) took.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC_STAT = Path("/proc/stat")
BUSY_CORES = 0.5  # other processes' average CPU use, in cores, from which a run counts as contended


@dataclass(frozen=True)
class CpuCounters:
    busy_s: float  # all CPUs' non-idle time (user, nice, system, irq, softirq), seconds
    steal_s: float  # time the hypervisor gave the virtual CPUs to someone else
    own_s: float  # this process's CPU time, all threads
    wall_s: float
    cpus: int  # how many CPUs the counters cover

    @classmethod
    def read(cls, cpus: set[int], stat_file: Path = PROC_STAT) -> CpuCounters | None:
        """The counters summed over `cpus` (the ones this process may run on); None where they
        cannot be read (not Linux)."""
        try:
            lines = stat_file.read_text().splitlines()
        except OSError:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = steal = 0.0
        found = 0
        for line in lines:
            fields = line.split()
            if not fields or not fields[0].startswith("cpu") or fields[0] == "cpu" or len(fields) < 9:
                continue
            if int(fields[0][3:]) not in cpus:
                continue
            user, nice, system, _idle, _iowait, irq, softirq, stolen = (int(v) / tick for v in fields[1:9])
            busy += user + nice + system + irq + softirq
            steal += stolen
            found += 1
        if not found:
            return None
        own = os.times()
        return cls(busy, steal, own.user + own.system, time.monotonic(), found)


@dataclass(frozen=True)
class MachineLoad:
    cpus: int  # CPUs this process may run on
    threads: int  # the most threads any measured engine ran
    other_cores: float  # other processes' average CPU use while measuring, in cores
    steal_pct: float  # hypervisor steal, percent of all CPUs' time

    @property
    def contended(self) -> bool:
        """Other processes kept enough CPU busy that the engines' threads had to share cores."""
        return self.other_cores >= BUSY_CORES and self.threads + self.other_cores > self.cpus

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpus": self.cpus,
            "threads": self.threads,
            "other_cores": round(self.other_cores, 2),
            "steal_pct": round(self.steal_pct, 1),
            "contended": self.contended,
        }

    def warning(self) -> str | None:
        if not self.contended:
            return None
        free = max(1, int(self.cpus - self.other_cores + 0.5))
        return (
            f"benchmark: other processes kept {self.other_cores:.1f} of this machine's {self.cpus} CPUs "
            f"busy while it ran, and the engines ran up to {self.threads} threads, so some shared a "
            f"core with that load: the speed numbers depend on it and may not hold on a rerun. "
            f"Set benchmark.threads: {free} (the CPUs left free) or run on an idle machine"
        )


def machine_load(before: CpuCounters | None, after: CpuCounters | None, threads: int) -> MachineLoad | None:
    if before is None or after is None or after.wall_s <= before.wall_s:
        return None
    cpus = after.cpus
    wall = after.wall_s - before.wall_s
    others = (after.busy_s - before.busy_s) - (after.own_s - before.own_s)
    steal = after.steal_s - before.steal_s
    return MachineLoad(cpus, threads, max(0.0, others / wall), 100.0 * max(0.0, steal) / (wall * cpus))


def cpu_set() -> set[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def engine_threads(engines: list[Any], cpus: int) -> int:
    """The most threads any engine runs: its `threads` setting, else the runtime's default (every
    one of the `cpus` usable CPUs, as ONNX Runtime, OpenVINO and PyTorch choose it)."""
    return max((getattr(engine.config, "threads", None) or cpus for engine in engines), default=cpus)
