"""optcli's TensorRT code (and the fake) checked against the REAL TensorRT Python bindings, 10.x and 11.x.

scripts/trt_bindings/prepare.py downloads the real `tensorrt-cuXX-bindings` wheels and compiles stub
libnvinfer/libnvonnxparser/libnvinfer_plugin (cached under $OPTCLI_TEST_CACHE), so the real pybind11
module imports on this CPU machine: its enums, classes, methods and signatures are TensorRT's own. Nothing
can be built or run with it (every factory returns NULL), so this proves API conformance, not behaviour on
a GPU. Skipped with the reason when the wheels cannot be downloaded or no C compiler exists.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
from functools import cache
from typing import Any

import pytest
from fakes.fake_tensorrt import new_fake_tensorrt
from trt_api_usage import (
    ENUMS,
    FAKE_KNOBS,
    LEGACY_NAMES,
    ROOT,
    SCRIPTS,
    SEVERITIES,
    USES,
    assigned_attributes,
    call_sites,
    trt_chains,
)

from optcli.backends.tensorrt.compat import LEGACY_FLAGS


def test_the_table_covers_every_trt_name_the_code_uses():
    """A new `trt.X` in the code without a row here would go unchecked against the real module."""
    known = set(USES) | set(ENUMS) | {f"{e}.{m}" for e, members in ENUMS.items() for m in members}
    known |= {"__version__", "ILogger.Severity", "ILogger.__init__"}
    chains = trt_chains()
    assert chains, "static analysis found no trt.* names: the walker is broken"
    assert chains <= known, f"trt names used in optcli but not in USES/ENUMS: {sorted(chains - known)}"
    sites, assigned = call_sites(), assigned_attributes()
    stale = [(c, m) for c, members in USES.items() for m, use in members.items()
             if (use == "call" and (c, m) not in sites) or (use == "set" and m not in assigned)]  # fmt: skip
    assert not stale, f"USES rows the code no longer uses (remove them): {stale}"


# -- the real bindings --------------------------------------------------------------------------------
@cache
def bindings(major: int) -> Any:
    spec = importlib.util.spec_from_file_location("trt_prepare", SCRIPTS / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    try:
        return module.prepare(major)
    except module.BindingsUnavailable as exc:
        return str(exc)


def real(major: int) -> Any:
    found = bindings(major)
    if isinstance(found, str):
        pytest.skip(f"real TensorRT {major}.x bindings unavailable: {found}")
    return found


@cache
def real_api(major: int) -> dict[str, Any]:
    found = real(major)
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "dump_api.py"), "tensorrt"],
        env=found.env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    api = json.loads(done.stdout)
    assert api["version"] == found.version and len(api["classes"]) > 50, "not the real bindings"
    return api


def params(signature: dict[str, Any], bound: bool = True) -> list[dict[str, Any]]:
    """Parameters after `self` (pybind11 names it in every method's signature line)."""
    ps = signature["params"]
    return ps[1:] if bound and ps and ps[0]["name"] == "self" else ps


def accepts(signature: dict[str, Any], positional: int, keywords: list[str]) -> bool:
    """Whether `f(<positional args>, **keywords)` binds to this pybind11 signature."""
    ps = params(signature)
    if positional > len(ps):
        return False
    rest = {p["name"]: p for p in ps[positional:]}
    if not set(keywords) <= set(rest):
        return False
    return all(p["default"] or name in keywords for name, p in rest.items())


@pytest.mark.parametrize("major", [10, 11])
def test_every_call_matches_the_real_signature(major):
    api = real_api(major)
    problems = []
    for (cls, member), sites in sorted(call_sites().items()):
        entry = api["classes"].get(cls, {}).get(member)
        if entry is None or entry["kind"] != "method":
            problems.append(f"{cls}.{member} does not exist in TensorRT {api['version']}")
            continue
        assert entry["signatures"], f"no parsable signature for {cls}.{member}: parser broken"
        for where, positional, kws in sites:
            if not any(accepts(s, positional, kws) for s in entry["signatures"]):
                real_sigs = [[p["name"] for p in params(s)] for s in entry["signatures"]]
                problems.append(
                    f"{where}: {cls}.{member} called with {positional} args {kws}; real: {real_sigs}"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("major", [10, 11])
def test_every_property_enum_and_override_exists(major):
    api = real_api(major)
    problems = []
    for cls, members in USES.items():
        real_members = api["classes"].get(cls)
        if real_members is None:
            problems.append(f"class {cls} missing")
            continue
        for member, use in members.items():
            entry = real_members.get(member)
            if entry is None:
                problems.append(f"{cls}.{member} missing")
            elif use == "set" and not (entry["kind"] == "property" and entry["writable"]):
                problems.append(f"{cls}.{member} is not a writable property ({entry})")
            elif use == "override":
                names = [[p["name"] for p in params(s)] for s in entry["signatures"]]
                if ["severity", "msg"] not in names:  # compat.RecordingLogger.log(self, severity, msg)
                    problems.append(f"{cls}.{member} has signatures {names}")
    for enum, members in ENUMS.items():
        missing = sorted(set(members) - set(api["enums"].get(enum, [])))
        if missing or enum not in api["enums"]:
            problems.append(f"enum {enum} lacks {missing or 'everything'}")
    missing = sorted(set(SEVERITIES) - set(real_members_of(api, "ILogger", "Severity")))
    problems += [f"ILogger.Severity lacks {missing}"] if missing else []
    assert not problems, f"TensorRT {api['version']}: " + "; ".join(problems)


def real_members_of(api: dict[str, Any], cls: str, enum: str) -> list[str]:
    return api["classes"][cls][enum]["members"]


@pytest.mark.parametrize("major", [10, 11])
def test_legacy_builder_flags_exist_exactly_where_optcli_allows_them(major):
    """The legacy weak-typing path names BuilderFlag.FP16/BF16/INT8/FP8: all real in 10.x, all gone in 11.x
    (which is why compat refuses legacy_precision_flags on 11)."""
    flags = set(real_api(major)["enums"]["BuilderFlag"])
    present = sorted(set(LEGACY_NAMES) & flags)
    assert present == (LEGACY_NAMES if major == 10 else []), present
    assert ("OBEY_PRECISION_CONSTRAINTS" in flags) == (major == 10)


def fake_param_names(function: Any) -> list[str]:
    return [p for p in inspect.signature(function).parameters if p != "self"]


@pytest.mark.parametrize("major", [10, 11])
def test_the_fake_is_a_subset_of_the_real_api(major):
    """Every class, enum member, method (with its parameter names) and property the fake offers exists in
    the real module of the same major version, so fake-based tests cannot lean on an invented API."""
    api = real_api(major)
    fake = new_fake_tensorrt(api["version"])
    problems = []
    for name, value in vars(fake).items():
        if name.startswith("_") or name in FAKE_KNOBS:
            continue
        if isinstance(value, type) and hasattr(value, "__members__"):
            extra = sorted(set(value.__members__) - set(api["enums"].get(name, [])))
            problems += [f"enum {name}: not real: {extra}"] if extra or name not in api["enums"] else []
        elif isinstance(value, type):
            problems += compare_class(name, value, api["classes"].get(name))
        else:
            problems.append(f"module attribute {name} is not in the real module")
    assert not problems, f"fake vs TensorRT {api['version']}:\n" + "\n".join(problems)


def prefix_of(names: list[str], real_params: list[dict[str, Any]]) -> bool:
    """The fake's parameters are the real ones in order; any real ones it leaves out have defaults."""
    head, tail = real_params[: len(names)], real_params[len(names) :]
    return [p["name"] for p in head] == names and all(p["default"] for p in tail)


def compare_class(name: str, fake_cls: type, real_cls: dict[str, Any] | None) -> list[str]:
    if real_cls is None:
        return [f"class {name} does not exist"]
    problems = []
    for member, value in vars(fake_cls).items():
        if member.startswith("_") and member != "__init__":
            continue
        entry = real_cls.get(member)
        if entry is None:
            problems.append(f"{name}.{member} does not exist")
        elif inspect.isfunction(value) and entry["kind"] == "method" and entry["signatures"]:
            names = fake_param_names(value)
            if not any(prefix_of(names, params(s)) for s in entry["signatures"]):
                real_names = [[p["name"] for p in params(s)] for s in entry["signatures"]]
                problems.append(f"{name}.{member}{tuple(names)}: real {real_names}")
        elif isinstance(value, property) and entry["kind"] != "property":
            problems.append(f"{name}.{member} is a {entry['kind']} in TensorRT, a property in the fake")
    return problems


BEHAVIOUR = r"""
import json, sys
import onnx
from onnx import TensorProto, helper
import tensorrt as trt
from optcli.backends.tensorrt import TensorRTConfig, TensorRTEngine, compat
from optcli.backends.tensorrt.build import BuildOptions, build_plan, network_flags
from optcli.backends.tensorrt.runtime import PlanSession
from optcli.errors import MissingDependencyError

out = {"module": trt.__name__, "version": compat.import_tensorrt().__version__}
logger = compat.shared_logger(trt)
logger.log(trt.ILogger.Severity.ERROR, "boom")
logger.log(trt.ILogger.Severity.WARNING, "ignored")
out["logged"] = logger.take()
out["flags"] = [network_flags(trt, False), 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)]
out["legacy"] = {p: compat.legacy_flags_problem(trt, True, p) for p in compat.LEGACY_FLAGS}
graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
onnx.save(helper.make_model(graph), sys.argv[1])
for what, call in [("build", lambda: build_plan(trt, logger, __import__("pathlib").Path(sys.argv[1]),
                                                 BuildOptions("fp32"), None)),
                   ("runtime", lambda: PlanSession(trt, logger, b"not a plan"))]:
    try:
        call()
        out[what] = None
    except MissingDependencyError as exc:
        out[what] = [exc.exit_code, exc.message]
out["unavailable"] = TensorRTEngine.unavailable(TensorRTConfig()).reason
out["unavailable_legacy"] = TensorRTEngine.unavailable(TensorRTConfig(legacy_precision_flags=True)).reason
print(json.dumps(out))
"""


@pytest.mark.parametrize("major", [10, 11])
def test_optcli_code_runs_against_the_real_module(major, tmp_path):
    """The parts of the backend that need no device run on the real module: logger subclassing, enum
    names, flags, the legacy gate, and a Builder/Runtime the library cannot create -> exit 3, not a crash."""
    found = real(major)
    done = subprocess.run(
        [sys.executable, "-c", BEHAVIOUR, str(tmp_path / "m.onnx")],
        env=found.env(), capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert (out["module"], out["version"]) == ("tensorrt_bindings", found.version)
    assert out["logged"] == ["boom"]
    assert out["flags"][0] == out["flags"][1] > 0
    if major == 10:
        assert out["legacy"] == dict.fromkeys(LEGACY_FLAGS)
    else:
        assert all("removed the FP16/INT8/FP8 builder flags" in v for v in out["legacy"].values())
    assert out["build"][0] == 3 and "could not create a Builder" in out["build"][1], out["build"]
    assert out["runtime"][0] == 3 and "could not create a Runtime" in out["runtime"][1], out["runtime"]
    assert "no CUDA device" in out["unavailable"]  # torch here is a CPU build
    expected = "no CUDA device" if major == 10 else "legacy_precision_flags needs TensorRT 10.x"
    assert expected in out["unavailable_legacy"], out["unavailable_legacy"]
