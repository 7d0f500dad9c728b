"""A steady heap while benchmarking: freed memory stays in the process instead of going back to the OS.

glibc's malloc serves large blocks with fresh mmap() pages and returns them on free, so PyTorch
eager, which allocates its activations on every call, page-faults them in every call: 45 to 600
minor faults per batch-64 call of the example recipe's CNN (by process: glibc's thresholds adapt
to the frees it has seen), and their cost moves with the machine's state (the same process read
7.3 ms and 10.8 ms per call, seconds apart). Engines with their own arenas (ONNX Runtime,
OpenVINO) barely fault, so the speedup moved with it. With the thresholds below the same calls
fault < 3 times each (per-process medians 8.9-9.4 ms in 3 processes): the way a serving process
with jemalloc or tcmalloc runs PyTorch. Measured on this project's 2-core CPU machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD = 1 << 30


@functools.cache
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") else None  # glibc only


def steady_heap() -> dict[str, Any]:
    """Set the thresholds for the rest of this process; what was set (for the report)."""
    libc = _libc()
    if libc is None:
        return {"steady": False, "reason": "not glibc: malloc left as it is"}
    mmap_set = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    if not (mmap_set and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1):
        return {"steady": False, "reason": "glibc refused mallopt"}
    return {"steady": True, "mmap_threshold": MMAP_THRESHOLD, "trim_threshold": TRIM_THRESHOLD}
