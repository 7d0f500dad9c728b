"""What optcli's TensorRT backend uses of the `tensorrt` module: a curated table and the ast walker that
keeps it honest (tests/test_trt_conformance.py checks both against the real bindings)."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from optcli.backends.tensorrt.compat import LEGACY_FLAGS
from optcli.backends.tensorrt.runtime import TORCH_DTYPES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "optcli" / "backends" / "tensorrt"
SCRIPTS = ROOT / "scripts" / "trt_bindings"
TRT_NAMES = {"trt", "self.trt", "self._trt"}  # how the package names the tensorrt module object

# What optcli uses, per TensorRT class: "call" (every call site is checked against the real signature),
# "get"/"set" (a property; "set" must be writable), "override" (a virtual method optcli implements).
USES: dict[str, dict[str, str]] = {
    "Builder": {"__init__": "call", "create_network": "call", "create_builder_config": "call",
                "create_optimization_profile": "call", "build_serialized_network": "call"},
    "INetworkDefinition": {"num_inputs": "get", "get_input": "call"},
    "ITensor": {"name": "get", "shape": "get"},
    "OnnxParser": {"__init__": "call", "parse_from_file": "call", "num_errors": "get", "get_error": "call"},
    "ParserError": {"node": "call", "node_name": "call", "node_operator": "call", "desc": "call"},
    "IBuilderConfig": {"set_memory_pool_limit": "call", "builder_optimization_level": "set",
                       "profiling_verbosity": "set", "hardware_compatibility_level": "set",
                       "set_flag": "call", "add_optimization_profile": "call", "create_timing_cache": "call",
                       "set_timing_cache": "call", "get_timing_cache": "call"},
    "IOptimizationProfile": {"set_shape": "call"},
    "ITimingCache": {"serialize": "call"},
    "Runtime": {"__init__": "call", "deserialize_cuda_engine": "call"},
    "ICudaEngine": {"num_io_tensors": "get", "get_tensor_name": "call", "get_tensor_mode": "call",
                    "get_tensor_dtype": "call", "get_tensor_profile_shape": "call",
                    "create_execution_context": "call", "create_engine_inspector": "call"},
    "IExecutionContext": {"set_input_shape": "call", "get_tensor_shape": "call", "set_tensor_address": "call",
                          "execute_async_v3": "call"},
    "EngineInspector": {"execution_context": "set", "get_engine_information": "call"},
    "ILogger": {"__init__": "call", "log": "override", "Severity": "get"},
}  # fmt: skip
LEGACY_NAMES = sorted({name for names in LEGACY_FLAGS.values() for name in names})
# Enum members optcli names (by name: values were renumbered in 11); BuilderFlag only on the legacy path.
ENUMS: dict[str, list[str]] = {
    "NetworkDefinitionCreationFlag": ["STRONGLY_TYPED"],
    "MemoryPoolType": ["WORKSPACE"],
    "ProfilingVerbosity": ["DETAILED"],
    "HardwareCompatibilityLevel": ["AMPERE_PLUS"],
    "LayerInformationFormat": ["JSON"],
    "TensorIOMode": ["INPUT", "OUTPUT"],
    "DataType": sorted(TORCH_DTYPES),
    "BuilderFlag": [],  # members: LEGACY_NAMES, 10.x only
}
SEVERITIES = ["ERROR", "INTERNAL_ERROR"]  # compat.shared_logger keeps these
FAKE_KNOBS = {"calls", "parse_errors", "build_fails", "foreign_timing_cache", "no_device", "inspector_json"}


# -- static analysis of optcli/backends/tensorrt ---------------------------------------------------------
def dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


@cache
def trees() -> dict[str, ast.Module]:
    return {p.name: ast.parse(p.read_text()) for p in sorted(PACKAGE.glob("*.py"))}


def trt_chains() -> set[str]:
    """`X` and `X.Y` of every `trt.X.Y...` attribute chain in the package."""
    found = set()
    for tree in trees().values():
        for node in ast.walk(tree):
            chain = dotted(node) if isinstance(node, ast.Attribute) else None
            for prefix in TRT_NAMES:
                if chain and chain.startswith(prefix + ".") and chain.count(".") > prefix.count("."):
                    found.add(".".join(chain[len(prefix) + 1 :].split(".")[:2]))
    return found


def call_sites() -> dict[tuple[str, str], list[tuple[str, int, list[str]]]]:
    """(class, member) -> [(where, positional count, keyword names)] for every call of a USES "call" row.
    Methods are matched by name (unique within USES); `trt.X(...)`, `create(trt.X, ...)` and
    `trt.X.__init__(self)` are constructor calls."""
    by_name = {m: c for c, members in USES.items() for m, use in members.items() if use == "call"}
    sites: dict[tuple[str, str], list[tuple[str, int, list[str]]]] = {}
    for file, tree in trees().items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or any(isinstance(a, ast.Starred) for a in node.args):
                continue
            func, args = dotted(node.func) or "", list(node.args)
            if func == "create" and args and (dotted(args[0]) or "").startswith("trt."):
                func, args = dotted(args[0]), args[1:]
            parts = func.split(".")
            key = None
            if parts[0] == "trt" and len(parts) == 2 and parts[1] in USES:
                key = (parts[1], "__init__")
            elif parts[0] == "trt" and len(parts) == 3 and parts[2] == "__init__":
                key, args = (parts[1], "__init__"), args[1:]  # unbound: drop `self`
            elif isinstance(node.func, ast.Attribute) and node.func.attr in by_name:
                key = (by_name[node.func.attr], node.func.attr)
            if key:
                kws = [k.arg for k in node.keywords if k.arg]
                sites.setdefault(key, []).append((f"{file}:{node.lineno}", len(args), kws))
    return sites


def assigned_attributes() -> set[str]:
    return {
        target.attr
        for tree in trees().values()
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Attribute)
    }
