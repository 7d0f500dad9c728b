"""Benchmarking: interleaved timed rounds (measure), their statistics (stats), per-cell results."""

from optcli.benchmarking.measure import Cell, Schedule, Timings, measure_pass
from optcli.benchmarking.results import LatencyResult, analyze

__all__ = ["Cell", "LatencyResult", "Schedule", "Timings", "analyze", "measure_pass"]
