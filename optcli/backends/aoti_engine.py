"""AOTInductor engine: the PyTorch model exported with torch.export and compiled ahead of time by
Inductor into a `.pt2` package (a shared library plus weights), loaded with aoti_load_package.

Unlike torch.compile, the result is a file that runs without tracing or compiling at load: a
deployable artifact. It builds from the PyTorch model (like the torch engine), is validated and
benchmarked like every engine, and the package is cached: compiling means a C++ build.
"""

from __future__ import annotations

import copy
import hashlib
import os
import platform
import re
import shutil
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from optcli.backends.base import Engine, EngineConfig, Unavailable
from optcli.backends.shapes import shape_range, varying_axes
from optcli.backends.torch_engine import TorchDType
from optcli.errors import StageError
from optcli.flatten import flatten_outputs
from optcli.specs import DimRange, InputSpec

CACHE_STAGE = "aoti"  # <cache root>/aoti/<key>/model.pt2
PACKAGE = "model.pt2"
_PRECISION = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
# CPU flags with native kernels for the low precisions; elsewhere they are emulated and slower than FP32.
_CPU_LOW_PRECISION = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("amx_fp16",)}


class AotiConfig(EngineConfig):
    engine: Literal["aoti"] = "aoti"
    device: Literal["cpu", "cuda"] = Field("cpu", description="Device the package is compiled for.")
    dtype: TorchDType = Field(
        "float32",
        description="Compute dtype: the model and its float inputs are cast to it before export "
        "(on the CPU, bfloat16 needs avx512_bf16/amx_bf16 and float16 amx_fp16).",
    )
    threads: int | None = Field(None, ge=1, description="torch intra-op threads on CPU. Default: torch's.")


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor calls (its default: $CXX, else g++), if it is on PATH."""
    return shutil.which(os.environ.get("CXX", "g++"))


def _torch_version(torch: Any) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return (int(match[1]), int(match[2])) if match else (0, 0)


class AotiEngine(Engine):
    config: AotiConfig

    @classmethod
    def unavailable(cls, config: AotiConfig, precision: str | None = None) -> Unavailable | None:
        import torch

        if _torch_version(torch) < (2, 6):
            return Unavailable(
                f"aoti: aoti_compile_and_package needs torch >= 2.6, not {torch.__version__}",
                "pip install 'torch>=2.6'",
            )
        if cxx_compiler() is None:
            return Unavailable(
                "aoti: AOTInductor compiles C++ and no compiler was found ($CXX, else g++)",
                "install g++ (e.g. apt-get install g++) or set CXX",
            )
        if config.device == "cuda":
            if not torch.cuda.is_available():
                return Unavailable(
                    "aoti: no CUDA device is visible to PyTorch", "a CUDA GPU and a CUDA build of torch"
                )
            if config.dtype == "bfloat16" and torch.cuda.get_device_capability() < (8, 0):
                return Unavailable(
                    f"aoti: bf16 needs compute capability >= 8.0; {torch.cuda.get_device_name()} has less",
                    "dtype float16, or an Ampere or newer GPU",
                )
        elif config.dtype in _CPU_LOW_PRECISION:
            from optcli.environment import cpu_flags

            needs = _CPU_LOW_PRECISION[config.dtype]
            if not any(flag.startswith(needs) for flag in cpu_flags()):
                return Unavailable(
                    f"aoti: {_PRECISION[config.dtype]} on the CPU needs {' or '.join(needs)}, which this CPU "
                    "lacks (it would be emulated, slower than fp32)",
                    "dtype float32, or a CPU with " + " or ".join(needs),
                )
        return None

    def default_label(self) -> str:
        return "-".join(["aoti", self.precision] + (["cuda"] if self.config.device == "cuda" else []))

    @property
    def precision(self) -> str:
        return _PRECISION[self.config.dtype]

    def _load_impl(self) -> None:
        import torch
        import torch._inductor

        self._torch = torch
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self._specs: list[InputSpec] = self._extra("inputs")
        self._dtype = getattr(torch, self.config.dtype)
        model = self.context.torch_model()
        if self.config.dtype != "float32" or self.config.device != "cpu":
            model = copy.deepcopy(model).to(
                device=self.config.device, dtype=self._dtype
            )  # baseline untouched
        program = self._export(model.eval())
        key = package_key(program, self.config, _device_facts(torch, self.config.device))
        self._path, self._compile_s = self._package(program, key)
        self._runner = torch._inductor.aoti_load_package(str(self._path))

    def _export(self, model: Any) -> Any:
        torch = self._torch
        examples, dynamic = example_inputs(
            torch, self._specs, self._extra("dims"), self._dtype, self.config.device
        )
        try:
            with torch.no_grad():
                return torch.export.export(model, tuple(examples), dynamic_shapes=tuple(dynamic))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StageError(
                f"build: engine '{self.label}': torch.export could not capture the model with the dims in "
                f"model.dims ({type(exc).__name__}: {first}); a dim the model fixes needs min == max"
            ) from exc

    def _package(self, program: Any, key: str) -> tuple[Path, float | None]:
        """The run folder's package: copied from the cache, or compiled (and then cached). Both are
        written under a temp name and renamed, so the folder never holds half a package."""
        from optcli.cache import StageCache

        folder = Path(self._extra("work_dir")) / "aoti"
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.label)}.pt2"
        tmp = folder / f".{final.stem}.tmp-{os.getpid()}.pt2"  # Inductor insists on the .pt2 suffix
        cache = self.context.extras.get("cache") or StageCache()
        entry = cache.get(CACHE_STAGE, key)
        if entry is not None:
            shutil.copyfile(entry.path(PACKAGE), tmp)
            os.replace(tmp, final)
            return final, None
        started = time.perf_counter()
        try:
            self._torch._inductor.aoti_compile_and_package(program, package_path=str(tmp))
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StageError(f"build: engine '{self.label}': AOTInductor compile failed: {first}") from exc
        elapsed = time.perf_counter() - started
        os.replace(tmp, final)
        cache.put(CACHE_STAGE, key, {PACKAGE: final}, {"engine": self.label, "compile_s": round(elapsed, 2)})
        return final, elapsed

    def _bind_impl(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        torch, device = self._torch, self.config.device
        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[s.name])) for s in self._specs]
        return [t.to(device, self._dtype) if t.is_floating_point() else t.to(device) for t in tensors]

    def _run_bound_impl(self, bound: list[Any]) -> Any:
        with self._torch.inference_mode():
            return self._runner(*bound)

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        outputs = flatten_outputs(self._run_bound_impl(self._bind_impl(feeds)))
        return [(t.float() if t.is_floating_point() else t).detach().cpu().numpy() for t in outputs]

    def _synchronize_impl(self) -> None:
        if self.config.device == "cuda":
            self._torch.cuda.synchronize()

    def _close_impl(self) -> None:
        del self._runner

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        return {
            **super().describe(),
            "runtime": f"torch {torch.__version__} AOTInductor",
            "device": torch.cuda.get_device_name() if self.config.device == "cuda" else "cpu",
            "dtype": self.config.dtype,
            "path": str(self._path),
            "package_cached": self._compile_s is None,
            "compile_s": round(self._compile_s, 2) if self._compile_s is not None else None,
        }


def example_inputs(
    torch: Any, specs: list[InputSpec], dims: dict[str, DimRange], dtype: Any, device: str
) -> tuple[list[Any], list[dict[int, Any]]]:
    """Example tensors and torch.export dynamic_shapes from model.dims: one torch.export.Dim per dim name
    (the same name on two inputs is one dim). torch.export specializes sizes 0 and 1, so a varying dim's
    example is at least 2."""
    shared: dict[str, Any] = {}
    examples, dynamic = [], []
    for spec in specs:
        rng, axes = shape_range(spec, dims), varying_axes(spec, dims)
        for name in axes.values():
            if name not in shared:
                ident = re.sub(r"\W", "_", name)
                shared[name] = torch.export.Dim(ident, min=dims[name].min, max=dims[name].max)
        shape = [
            min(max(2, o), hi) if axis in axes else o for axis, (o, hi) in enumerate(zip(rng.opt, rng.max))
        ]
        tensor_dtype = dtype if "float" in spec.dtype else getattr(torch, spec.dtype)
        examples.append(torch.ones(shape, dtype=tensor_dtype, device=device))
        dynamic.append({axis: shared[name] for axis, name in axes.items()})
    return examples, dynamic


def program_digest(program: Any) -> str:
    """sha256 of an ExportedProgram: its graph, signature and ranges as printed (source-location
    comments dropped: they name the model file's folder) and every weight's bytes."""
    torch = __import__("torch")
    digest = hashlib.sha256()
    text = "\n".join(line for line in str(program).splitlines() if not line.lstrip().startswith("#"))
    digest.update(text.encode())
    for name, value in sorted({**program.state_dict, **program.constants}.items()):
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            flat = value.detach().cpu().contiguous().reshape(-1)
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            digest.update(flat.view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def _device_facts(torch: Any, device: str) -> dict[str, Any]:
    """What the compiled code is specific to: the CPU's ISA (Inductor compiles for the host) or the GPU."""
    if device == "cuda":
        return {"gpu": torch.cuda.get_device_name(), "capability": torch.cuda.get_device_capability()}
    from optcli.environment import cpu_flags

    return {"machine": platform.machine(), "cpu_flags": cpu_flags(), "compiler": cxx_compiler()}


def package_key(program: Any, config: AotiConfig, device: dict[str, Any]) -> str:
    import torch

    from optcli.cache import make_key

    parts = {
        "program": program_digest(program),
        "config": config.model_dump(mode="json", include={"device", "dtype"}),
        "device": device,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    return make_key(CACHE_STAGE, parts)
