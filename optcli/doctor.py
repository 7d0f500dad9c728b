"""`optcli doctor`: what is installed and usable here, and the command that adds each missing piece.

Machine facts (torch and its CUDA device, onnxruntime and its providers) are checked here; the
optional packages come from the registries: every engine, quantizer and data source declares the
packages it needs (`requires`), so a new entry shows up here without editing this file.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from importlib import metadata

from optcli.optional import OptionalPackage
from optcli.quiet import TORCHAO_LOGGERS, quiet_loggers


@dataclass
class Check:
    name: str
    usable: bool
    detail: str
    fix: str | None = None
    needed_by: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _version(*distributions: str) -> str | None:
    for dist in distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_package(package: OptionalPackage, needed_by: list[str] | None = None) -> Check:
    """Installed (a distribution's version) and importable (a broken install fails in many ways)."""
    users = list(needed_by or [])
    suffix = f" (for {', '.join(users)})" if users else ""
    version = _version(*package.distributions)
    if version is None:
        return Check(package.name, False, "not installed" + suffix, package.install, users)
    try:
        with quiet_loggers(*TORCHAO_LOGGERS):
            importlib.import_module(package.module)
    except Exception as exc:  # a wheel without its CUDA libraries raises OSError, not ImportError
        detail = f"{version} installed but import fails: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        return Check(package.name, False, detail + suffix, package.install, users)
    return Check(package.name, True, version + suffix, None, users)


def declared_packages() -> dict[OptionalPackage, list[str]]:
    """Every optional package a registry entry (or a built-in example) declares, with who needs it."""
    from optcli.backends import ENGINES
    from optcli.calibration import SOURCES
    from optcli.examples import minilm, vision
    from optcli.llm.quantize import REQUIRES as LLM_REQUIRES
    from optcli.quantization import QUANTIZERS

    registries = {
        "engine": {name: kind.requires for name, kind in ENGINES.items()},
        "quantizer": {name: q.requires for name, q in QUANTIZERS.items()},
        "data source": {name: kind.requires for name, kind in SOURCES.items()},
        "example": {"vision": vision.REQUIRES, "minilm": minilm.REQUIRES},
        "pipeline": {"llm": LLM_REQUIRES},
    }
    users: dict[OptionalPackage, list[str]] = {}
    for kind, entries in registries.items():
        for name, packages in entries.items():
            for package in packages:
                users.setdefault(package, []).append(f"{kind} {name}")
    return users


def check_torch() -> list[Check]:
    import torch

    checks = [Check("torch", True, f"{torch.__version__} (CUDA build: {torch.version.cuda or 'no'})")]
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        major, minor = torch.cuda.get_device_capability(0)
        fp8 = "FP8 capable" if (major, minor) >= (8, 9) else "no FP8 (needs compute capability >= 8.9)"
        checks.append(Check("cuda gpu", True, f"{name}, compute capability {major}.{minor}, {fp8}"))
    else:
        checks.append(
            Check(
                "cuda gpu",
                False,
                "no CUDA device visible to PyTorch",
                "a machine with an NVIDIA GPU and a CUDA build of torch",
            )
        )
    return checks


def check_onnxruntime() -> list[Check]:
    """The onnxruntime build and, per GPU provider, whether it is in the build and its library loads:
    onnxruntime-gpu lists its providers even where CUDA is missing."""
    import onnxruntime as ort

    from optcli.backends.onnxruntime_gpu import ONNXRUNTIME_GPU, PROVIDERS
    from optcli.backends.onnxruntime_gpu.libraries import provider_load_error, requirements

    providers = ort.get_available_providers()
    cpu, gpu = _version("onnxruntime"), _version("onnxruntime-gpu")
    detail = f"{ort.__version__}, providers: {', '.join(providers)}"
    if cpu and gpu:  # one `onnxruntime` module, two owners: the last install wins (onnxruntime#26996)
        both = f"both onnxruntime {cpu} and onnxruntime-gpu {gpu} are installed and overwrite each other"
        fix = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu (or onnxruntime)"
        checks = [Check("onnxruntime", False, f"{detail}; {both}", fix)]
    else:
        checks = [Check("onnxruntime", True, detail)]
    for short, provider in PROVIDERS.items():
        name = f"ort {short} provider"
        if provider not in providers:
            checks.append(Check(name, False, "not in this onnxruntime build", ONNXRUNTIME_GPU.install))
        elif error := provider_load_error(provider):
            checks.append(Check(name, False, f"in this build but cannot load: {error}", requirements()))
        else:
            checks.append(Check(name, True, "available"))
    return checks


def run_checks() -> list[Check]:
    checks = [*check_torch(), *check_onnxruntime()]
    checks.append(check_package(OptionalPackage("onnx", "onnx", ("onnx",), "pip install onnx")))
    checks += [check_package(package, users) for package, users in declared_packages().items()]
    return checks
