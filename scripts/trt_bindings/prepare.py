"""Real TensorRT Python bindings, importable on a machine without TensorRT's libraries or a GPU.

Downloads the small `tensorrt-cuXX-bindings` wheel of a TensorRT major version (the real pybind11
module), unpacks it and compiles stub libnvinfer / libnvinfer_plugin / libnvonnxparser with the
machine's C compiler (stubs.c), all cached under $OPTCLI_TEST_CACHE (default ~/.cache/optcli-test).
The result imports as `tensorrt` with the returned PYTHONPATH and LD_LIBRARY_PATH; nothing can be
built or run with it, but every enum, class, method and signature is TensorRT's own.

    python scripts/trt_bindings/prepare.py 11    # prints PYTHONPATH=... and LD_LIBRARY_PATH=...
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WHEELS = {10: "tensorrt-cu12-bindings==10.16.1.11", 11: "tensorrt-cu13-bindings==11.4.0.106"}
LIBRARIES = {"libnvinfer": "LIB_NVINFER", "libnvinfer_plugin": "LIB_PLUGIN", "libnvonnxparser": "LIB_PARSER"}
# `import tensorrt` gives the bindings module itself, as the `tensorrt` meta-package does.
SHIM = "import sys\n\nimport tensorrt_bindings\n\nsys.modules[__name__] = tensorrt_bindings\n"


class BindingsUnavailable(RuntimeError):
    """The wheel could not be downloaded or the stubs not compiled; the message says which."""


@dataclass(frozen=True)
class Bindings:
    major: int
    version: str
    pythonpath: str
    ld_library_path: str

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.pythonpath, env.get("PYTHONPATH")) if p)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (self.ld_library_path, env.get("LD_LIBRARY_PATH")) if p
        )
        return env


def cache_root() -> Path:
    return Path(os.environ.get("OPTCLI_TEST_CACHE", Path.home() / ".cache" / "optcli-test")) / "trt-bindings"


def _run(cmd: list[str], what: str, timeout: int) -> None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BindingsUnavailable(f"{what}: {exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        tail = [line for line in lines if line.startswith("ERROR")][-2:] or lines[-3:]  # pip's own reason
        raise BindingsUnavailable(f"{what} failed: {' | '.join(tail)}")


def _download(spec: str, target: Path) -> None:
    wheels = target / "wheels"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(wheels)]
    _run([*cmd, spec], f"pip download {spec}", timeout=300)
    found = sorted(wheels.glob("*.whl"))
    if not found:
        raise BindingsUnavailable(f"pip download {spec} left no wheel in {wheels}")
    with zipfile.ZipFile(found[0]) as archive:
        archive.extractall(target / "site")
    (target / "site" / "tensorrt.py").write_text(SHIM)


def _compile(major: int, target: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise BindingsUnavailable("no C compiler (cc/gcc) to build the TensorRT stub libraries")
    lib_dir = target / "lib"
    lib_dir.mkdir(parents=True, exist_ok=True)
    for name, macro in LIBRARIES.items():
        soname = f"{name}.so.{major}"  # the sonames the bindings were linked against
        cmd = [cc, "-shared", "-fPIC", "-O1", f"-D{macro}", f"-DPARSER_VERSION={major * 10000}"]
        _run([*cmd, f"-Wl,-soname,{soname}", "-o", str(lib_dir / soname), str(HERE / "stubs.c")],
             f"compiling {soname}", timeout=120)  # fmt: skip


def prepare(major: int) -> Bindings:
    """Download, unpack and stub one major version (cached; a finished setup is marked by READY)."""
    if major not in WHEELS:
        raise BindingsUnavailable(f"no bindings wheel pinned for TensorRT {major} (have {sorted(WHEELS)})")
    spec = WHEELS[major]
    version = spec.split("==")[1]
    target = cache_root() / version
    ready = target / "READY"
    if not ready.exists():
        shutil.rmtree(target, ignore_errors=True)  # a half-finished earlier attempt
        target.mkdir(parents=True)
        _download(spec, target)
        _compile(major, target)
        ready.write_text(spec + "\n")
    return Bindings(major, version, str(target / "site"), str(target / "lib"))


if __name__ == "__main__":
    try:
        found = prepare(int(sys.argv[1]) if len(sys.argv) > 1 else 11)
    except BindingsUnavailable as exc:
        sys.exit(f"prepare.py: {exc}")
    print(f"PYTHONPATH={found.pythonpath}\nLD_LIBRARY_PATH={found.ld_library_path}")
