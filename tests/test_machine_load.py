"""Other processes' CPU use during the benchmark: the counters from a fake /proc/stat (named as
such), and a real busy-loop process beside a real measurement window on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from optcli.benchmarking.load import CpuCounters, MachineLoad, cpu_set, machine_load
from optcli.report.headline import noisy_text

FAKE_STAT = """cpu  {u} 0 {s} 900 0 0 0 {st} 0 0
cpu0 {u0} 0 {s0} 450 0 0 0 {st0} 0 0
cpu1 {u1} 0 {s1} 450 0 0 0 0 0 0
intr 1 2 3
"""


def _fake_stat(tmp_path, name, **ticks):
    path = tmp_path / name
    path.write_text(FAKE_STAT.format(**ticks))
    return path


def test_counters_sum_only_the_cpus_this_process_may_use(tmp_path):
    tick = os.sysconf("SC_CLK_TCK")
    stat = _fake_stat(tmp_path, "fake-stat", u=30, s=6, st=4, u0=10, s0=2, st0=4, u1=20, s1=4)
    both = CpuCounters.read({0, 1}, stat)
    only_cpu1 = CpuCounters.read({1}, stat)
    assert both.busy_s == pytest.approx(36 / tick) and both.steal_s == pytest.approx(4 / tick)
    assert both.cpus == 2
    assert only_cpu1.busy_s == pytest.approx(24 / tick) and only_cpu1.steal_s == 0
    assert CpuCounters.read({7}, stat) is None  # none of the listed CPUs
    assert CpuCounters.read({0}, tmp_path / "missing") is None  # not Linux: nothing to say


def test_contended_only_when_threads_and_the_load_need_more_cpus_than_there_are():
    one_core_busy = MachineLoad(cpus=2, threads=2, other_cores=1.0, steal_pct=0.0)
    assert one_core_busy.contended
    assert "benchmark.threads: 1" in one_core_busy.warning()
    assert not MachineLoad(2, 1, 1.0, 0.0).contended  # one thread fits on the free core
    assert not MachineLoad(2, 2, 0.2, 0.0).contended  # a little background work
    assert MachineLoad(2, 2, 0.2, 0.0).warning() is None


def test_a_busy_process_beside_the_measurement_is_seen_and_flagged_in_the_reports():
    cpus = cpu_set()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        before = CpuCounters.read(cpus)
        time.sleep(1.5)
        after = CpuCounters.read(cpus)
    finally:
        busy.kill()
        busy.wait()
    load = machine_load(before, after, threads=len(cpus) or 1)
    assert load is not None and load.other_cores >= 0.7  # one core's worth, less scheduling slack
    assert load.contended
    report = {"benchmark": {"results": [], "machine_load": load.to_dict()}}
    assert f"of {len(cpus)} CPUs busy" in noisy_text(report)


def test_this_process_own_cpu_time_is_not_counted_as_other_load():
    before = CpuCounters(busy_s=10.0, steal_s=0.0, own_s=4.0, wall_s=100.0, cpus=2)
    after = CpuCounters(busy_s=13.0, steal_s=0.5, own_s=5.0, wall_s=102.0, cpus=2)
    load = machine_load(before, after, threads=1)
    assert load.other_cores == pytest.approx(1.0)  # 3 s busy, 1 s of it ours, over 2 s
    assert load.cpus == 2 and load.steal_pct == pytest.approx(100 * 0.5 / (2.0 * 2))
