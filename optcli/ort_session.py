"""The one place ONNX Runtime sessions are set up: engines, graph passes, calibration and the bench suite.

`onnxruntime` is imported only when a session is made, so this module imports with core dependencies
and without the cost of loading ORT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

CPU = "CPUExecutionProvider"
LEVELS = ("disabled", "basic", "extended", "all")


def ort_level(level: str) -> Any:
    """ORT's GraphOptimizationLevel for a recipe level name."""
    import onnxruntime as ort

    return {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]


def session_options(
    *,
    threads: int | None = None,
    level: str = "all",
    spinning: bool = True,
    optimized_model: Path | None = None,
    profile_prefix: Path | None = None,
) -> Any:
    """SessionOptions with optcli's defaults: errors-only logging, the given level and threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort_level(level)
    options.log_severity_level = 3  # errors only: ORT's warnings are noise for users here
    # x86 CPUs without VNNI run U8S8 kernels with VPMADDUBSW, whose int16 pair sums saturate for
    # 8-bit weights: an INT8 Gemm's output SQNR fell from 40 to 18 dB on an AVX2 EPYC. This makes ORT
    # use U8U8 there, only for weights outside [-64, 63]; CPUs with VNNI are unaffected.
    options.add_session_config_entry("session.x64quantprecision", "1")
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:  # spinning idle threads steal cores on shared or oversubscribed CPUs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_model is not None:
        options.optimized_model_filepath = str(optimized_model)
    if profile_prefix is not None:  # the caller stops it with end_profiling() before anything is timed
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return options


def create_session(
    path: Path,
    *,
    threads: int | None = None,
    level: str = "all",
    spinning: bool = True,
    providers: Sequence[Any] | None = None,
    optimized_model: Path | None = None,
    profile_prefix: Path | None = None,
    fallback: bool = True,
) -> Any:
    """An InferenceSession for `path`; CPU provider unless `providers` (ORT's list: names or
    (name, options) pairs) says otherwise. `fallback=False` makes a provider that fails to start
    raise instead of ORT silently retrying on the CPU."""
    import onnxruntime as ort

    options = session_options(
        threads=threads,
        level=level,
        spinning=spinning,
        optimized_model=optimized_model,
        profile_prefix=profile_prefix,
    )
    extra = {} if fallback else {"enable_fallback": 0}
    return ort.InferenceSession(str(path), options, providers=list(providers or [CPU]), **extra)
