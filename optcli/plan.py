"""One plan per run: which stages run, which engines are built (target candidates included), and
which of them this machine cannot run. Preflight checks it, `--dry-run` prints it, the pipeline
executes it; nothing downstream decides these again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from optcli.backends import unavailable
from optcli.backends.base import FINAL_ORDER, EngineConfig, Unavailable
from optcli.errors import MissingDependencyError
from optcli.passes import precision_after
from optcli.recipe import Recipe


@dataclass(frozen=True)
class Gpu:
    """A CUDA device as PyTorch sees it."""

    name: str
    capability: tuple[int, int]


@dataclass(frozen=True)
class Machine:
    """The facts about this machine that change the plan."""

    cpu_flags: tuple[str, ...]
    packages: frozenset[str]  # optional packages importable here
    gpus: tuple[Gpu, ...] | None = None  # None: not looked at yet (probed on first use, it imports torch)
    no_gpu_reason: str = "PyTorch sees no CUDA device"

    @classmethod
    def here(cls) -> Machine:
        from optcli.backends import ENGINES
        from optcli.environment import cpu_flags
        from optcli.quantization import QUANTIZERS

        # What the CPU target's extra candidates need, as their registry entries declare it.
        optional = [*ENGINES["openvino"].requires, *QUANTIZERS["nncf"].requires]
        return cls(tuple(cpu_flags()), frozenset(p.name for p in optional if p.found()))

    @property
    def bf16(self) -> bool:
        return any(flag.startswith(("avx512_bf16", "amx_bf16")) for flag in self.cpu_flags)

    @property
    def gpu(self) -> Gpu | None:
        """The first CUDA device, which GPU engines run on."""
        gpus = self.gpus if self.gpus is not None else probe_gpus()[0]
        return gpus[0] if gpus else None

    @property
    def missing_gpu(self) -> str:
        return self.no_gpu_reason if self.gpus is not None else probe_gpus()[1]


@functools.cache
def probe_gpus() -> tuple[tuple[Gpu, ...], str]:
    """CUDA devices visible to PyTorch, and why there are none when there are none."""
    import torch

    if torch.version.cuda is None:
        return (), f"this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return (), f"PyTorch (CUDA {torch.version.cuda}) sees no CUDA device (driver, CUDA_VISIBLE_DEVICES)"
    count = torch.cuda.device_count()
    gpus = tuple(
        Gpu(torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i)) for i in range(count)
    )
    return gpus, ""


@dataclass
class PlannedEngine:
    config: EngineConfig
    artifact: str | None  # the artifact it runs, resolved ('final' replaced); None: runs PyTorch
    precision: str | None  # what that artifact will compute in, known from the recipe
    origin: str  # "recipe" or "target"
    missing: Unavailable | None = None

    @property
    def label(self) -> str:
        return self.config.name or self.config.engine


@dataclass
class Plan:
    stages: list[str]
    artifacts: dict[str, str]  # artifact name -> planned precision
    engines: list[PlannedEngine]
    target: str | None
    skip_unavailable: bool
    not_available: list[dict[str, str]] = field(default_factory=list)  # target candidates left out
    baseline: Any = None  # TorchConfig of the PyTorch eager FP32 reference
    notes: list[str] = field(default_factory=list)  # decisions the report should mention

    @property
    def runnable(self) -> list[PlannedEngine]:
        return [e for e in self.engines if e.missing is None]

    @property
    def skipped(self) -> list[PlannedEngine]:
        return [e for e in self.engines if e.missing is not None]

    def describe(self) -> dict[str, Any]:
        return {
            "stages": self.stages,
            "artifacts": self.artifacts,
            "engines": [
                {
                    "engine": e.label,
                    "kind": e.config.engine,
                    "artifact": e.artifact,
                    "precision": e.precision,
                    "origin": e.origin,
                    "available": e.missing is None,
                    **({"reason": e.missing.reason, "fix": e.missing.fix} if e.missing else {}),
                }
                for e in self.engines
            ],
            "target": self.target,
            "not_available": self.not_available,
        }


def make_plan(recipe: Recipe, machine: Machine, *, through_quantization: bool = False) -> Plan:
    artifacts = planned_artifacts(recipe, machine)
    stages = ["load", "export", *(f"pass:{p.name}" for p in recipe.passes)]
    quantization = recipe.quantization
    if quantization is not None and quantization.precision != "fp32":
        stages.append(f"quantize:{quantization.precision}")
    if "quantized_nncf" in artifacts:
        stages.append("quantize:int8-nncf")
    if "quantized_mixed" in artifacts:
        stages.append("quantize:mixed")
    if through_quantization:
        return Plan(stages, artifacts, [], None, recipe.skip_unavailable)
    threads = recipe.benchmark.threads
    engines = [_planned(_with_threads(config, threads), artifacts, "recipe") for config in recipe.build]
    not_available: list[dict[str, str]] = []
    if recipe.target is not None:
        taken = {e.label for e in engines}
        same = {_identity(e) for e in engines}
        for config in target_candidates(recipe, machine, artifacts):
            candidate = _planned(_with_threads(config, threads), artifacts, "target")
            if config.name in taken or _identity(candidate) in same:
                continue  # the recipe builds this engine already
            if candidate.missing is None:
                engines.append(candidate)
            else:
                not_available.append(
                    {
                        "engine": candidate.label,
                        "reason": candidate.missing.reason,
                        "fix": candidate.missing.fix,
                    }
                )
    stages.append("build")
    if recipe.validate_.enabled:
        stages.append("validate")
    if recipe.benchmark.enabled:
        stages.append("benchmark")
    if recipe.target is not None:
        stages.append("select")
    plan = Plan(stages, artifacts, engines, recipe.target, recipe.skip_unavailable, not_available)
    device = None
    if recipe.target == "gpu":  # speedups on a GPU are against eager FP32 on the same GPU
        device = "cuda"
        if recipe.baseline.device != "cuda":
            plan.notes.append("target gpu: the baseline is eager FP32 on the GPU, not baseline.device")
    plan.baseline = baseline_config(recipe, plan.notes, device)
    return plan


def target_candidates(recipe: Recipe, machine: Machine, artifacts: dict[str, str]) -> list[EngineConfig]:
    """`target: gpu` needs a CUDA device (exit 3 without one); cpu and auto plan the CPU candidates."""
    if recipe.target != "gpu":
        return cpu_candidates(recipe, machine, artifacts)
    if machine.gpu is None:
        raise MissingDependencyError(
            f"target: gpu needs a CUDA GPU, and {machine.missing_gpu}",
            hint="run on a machine with an NVIDIA GPU and a CUDA build of torch, or use --target cpu",
        )
    from optcli.gpu_target import gpu_candidates

    return gpu_candidates(recipe, machine.gpu, artifacts)


def baseline_config(recipe: Recipe, notes: list[str], device: str | None = None):
    """Eager FP32 on the recipe's baseline device; CPU when CUDA is missing and skipping was asked for."""
    from optcli.backends.torch_engine import TorchConfig, TorchEngine

    settings = recipe.baseline
    config = TorchConfig(
        name="pytorch-eager-fp32",
        device=device or settings.device,
        threads=settings.threads or recipe.benchmark.threads,
    )
    if config.device != "cpu" and TorchEngine.unavailable(config) is not None and recipe.skip_unavailable:
        notes.append("baseline.device cuda is not available here; the baseline ran on the CPU")
        config = config.model_copy(update={"device": "cpu"})
    if config.device == "cuda":
        config = config.model_copy(update={"name": "pytorch-eager-fp32-cuda"})
    return config


def _with_threads(config: EngineConfig, threads: int | None) -> EngineConfig:
    """benchmark.threads applies to every engine that has a threads setting and leaves it unset."""
    if threads and getattr(config, "threads", "n/a") is None:
        return config.model_copy(update={"threads": threads})
    return config


def planned_artifacts(recipe: Recipe, machine: Machine) -> dict[str, str]:
    """Every artifact the recipe produces, with the precision it will have."""
    artifacts = {"exported": "fp32"}
    if recipe.passes:
        artifacts["optimized"] = precision_after([p.name for p in recipe.passes], start="fp32")
    quantization = recipe.quantization
    if quantization is not None and quantization.precision != "fp32":
        artifacts["quantized"] = quantization.precision
        if wants_nncf_artifact(recipe, machine):
            artifacts["quantized_nncf"] = "int8"
        if wants_mixed_artifact(recipe):
            artifacts["quantized_mixed"] = "int8"
    return artifacts


def wants_mixed_artifact(recipe: Recipe) -> bool:
    """`target: cpu` with INT8 and validate gates: a mixed-precision candidate is searched for when
    the fastest INT8 candidate misses them (stages/mixed.py); it runs only if one is found."""
    quantization = recipe.quantization
    return (
        recipe.target in ("cpu", "auto")
        and quantization is not None
        and quantization.precision == "int8"
        and quantization.mixed.enabled
        and recipe.validate_.enabled
        and bool(recipe.validate_.gates)
    )


def mixed_source(artifacts: dict[str, str]) -> str:
    """The INT8 artifact the mixed candidate starts from: the one the fastest INT8 engine runs
    (OpenVINO on NNCF's placement when planned, else the recipe's quantizer on its engine)."""
    return "quantized_nncf" if "quantized_nncf" in artifacts else "quantized"


def mixed_candidate(int8_engine: EngineConfig, machine: Machine) -> EngineConfig:
    """The mixed candidate that starts from `int8_engine`'s artifact: the same engine on the mixed
    artifact, its kept layers in BF16 where the CPU has it (OpenVINO's hint), else FP32."""
    name = {"onnxruntime": "ort", "openvino": "ov"}[int8_engine.engine] + "-mixed"
    # Not the INT8 engine's own gates: a recipe engine's speed gate is about that engine.
    update: dict[str, Any] = {"name": name, "artifact": "quantized_mixed", "gates": {}}
    if "precision_hint" in type(int8_engine).model_fields:
        update["precision_hint"] = "bf16" if machine.bf16 else "f32"
    return int8_engine.model_copy(update=update)


def wants_nncf_artifact(recipe: Recipe, machine: Machine) -> bool:
    """`target: cpu` with OpenVINO: a second INT8 artifact placed by NNCF the way OpenVINO runs fastest."""
    quantization = recipe.quantization
    return (
        recipe.target in ("cpu", "auto")
        and quantization is not None
        and quantization.precision == "int8"
        and quantization.quantizer != "nncf"
        and {"nncf", "openvino"} <= machine.packages  # the packages' declared names
    )


def cpu_candidates(recipe: Recipe, machine: Machine, artifacts: dict[str, str]) -> list[EngineConfig]:
    """Engine configs for the CPU target, in the order they are tried."""
    from optcli.backends.onnxruntime import OnnxRuntimeConfig
    from optcli.backends.openvino_engine import OpenVINOConfig

    float_artifact = "optimized" if "optimized" in artifacts else "exported"
    int8 = artifacts.get("quantized") == "int8"
    candidates: list[EngineConfig] = [OnnxRuntimeConfig(name="ort-fp32", artifact=float_artifact)]
    if int8:
        candidates.append(OnnxRuntimeConfig(name="ort-int8", artifact="quantized"))
    candidates.append(OpenVINOConfig(name="ov-fp32", artifact=float_artifact, precision_hint="f32"))
    if machine.bf16:
        candidates.append(OpenVINOConfig(name="ov-bf16", artifact=float_artifact, precision_hint="bf16"))
    ov_int8 = None
    if int8 and recipe.quantization.quantizer == "nncf":
        ov_int8 = ("ov-int8", "quantized")
    elif "quantized_nncf" in artifacts:
        ov_int8 = ("ov-nncf-int8", "quantized_nncf")
    if ov_int8 is not None:
        candidates.append(OpenVINOConfig(name=ov_int8[0], artifact=ov_int8[1], precision_hint="f32"))
        if machine.bf16:  # leftover float ops in bf16: faster on some CPUs, slower on others; measured
            candidates.append(
                OpenVINOConfig(name=f"{ov_int8[0]}-bf16", artifact=ov_int8[1], precision_hint="bf16")
            )
    if "quantized_mixed" in artifacts:
        # On the engine of the source artifact (the run may move it to the INT8 engine measured
        # fastest: stages/mixed_source.py).
        source = mixed_source(artifacts)
        # OpenVINO's when two engines run it (quantizer nncf: ORT and OpenVINO on `quantized`).
        int8_engine = [c for c in candidates if getattr(c, "artifact", None) == source][-1]
        candidates.append(mixed_candidate(int8_engine, machine))
    # AOTInductor is not a default candidate. FP32: cold, the build stage took 42 s with it on
    # ResNet-50 (its compile 37 s) and 2 s without it, and in every ranking measured (ResNet-50,
    # MobileNetV3-L at 1 and 2 threads, this project's AVX2 EPYC) it came last, at 1.6-2.8x ORT
    # FP32's p50 (bench/results-cpu.md). BF16, on a 2-core AMX Xeon at 1 thread (ResNet-50,
    # interleaved, two passes): its compile took 64 s of a 180 s run, and it ran 46-48 ms p50
    # against OpenVINO BF16's 13.1-13.4 ms on the same CPU. List `{engine: aoti}` under build: to
    # rank it too.
    return candidates


def _identity(engine: PlannedEngine) -> str:
    """What an engine computes, whatever it is called: its settings and the artifact it runs."""
    settings = engine.config.model_dump(mode="json", exclude={"name", "gates", "artifact"})
    return f"{sorted(settings.items())}|{engine.artifact}"


def _planned(config: EngineConfig, artifacts: dict[str, str], origin: str) -> PlannedEngine:
    name = getattr(config, "artifact", None)
    if name == "final":
        name = next((n for n in FINAL_ORDER if n in artifacts), "exported")
    precision = artifacts.get(name) if name else None
    return PlannedEngine(config, name, precision, origin, unavailable(config, precision))
