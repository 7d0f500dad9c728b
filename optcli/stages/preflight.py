"""Before any expensive stage: can every engine in the recipe run on this machine?"""

from __future__ import annotations

from optcli.backends import unavailable
from optcli.errors import MissingDependencyError, UserInputError
from optcli.quantization import QUANTIZERS
from optcli.stages.context import Run
from optcli.stages.target import add_candidates


def preflight_stage(run: Run, *, engines: bool = True) -> None:
    """Exit 3 with the fix for the first engine that cannot run, or mark them skipped when asked."""
    check_quantizer(run)
    check_held_out(run)
    if not engines:
        return
    check_baseline(run)
    runnable = []
    for index, config in enumerate(run.recipe.build):
        label = config.name or config.engine
        missing = unavailable(config, planned_precision(run.recipe, getattr(config, "artifact", None)))
        if missing is None:
            runnable.append(config)
            continue
        if not run.recipe.skip_unavailable:
            raise MissingDependencyError(
                f"build.{index} ('{label}') cannot run on this machine: {missing.reason}",
                hint=f"{missing.fix}; see `optcli doctor`, or --skip-unavailable to run the other engines",
            )
        run.report.skipped.append({"engine": label, "reason": missing.reason, "fix": missing.fix})
    run.runnable_build = runnable
    if run.recipe.target is not None:
        add_candidates(run)


def check_quantizer(run: Run) -> None:
    settings = run.recipe.quantization
    if settings is None or settings.precision in ("fp32", "fp16"):
        return
    quantizer = QUANTIZERS[settings.quantizer]
    if settings.precision not in quantizer.precisions:
        raise UserInputError(
            f"quantization.precision: the {quantizer.name} quantizer does not support "
            f"{settings.precision} (it supports {sorted(quantizer.precisions)})"
        )
    quantizer.check(settings)
    missing = quantizer.unavailable(settings)
    if missing is not None:
        raise MissingDependencyError(
            f"quantization.quantizer '{quantizer.name}': {missing.reason}", hint=missing.fix
        )


def planned_precision(recipe, artifact: str | None) -> str | None:
    """The precision the named artifact will have, known from the recipe before anything runs."""
    quantization = recipe.quantization
    quantized = quantization is not None and quantization.precision != "fp32"
    if artifact in ("quantized", "final") and quantized:
        return quantization.precision
    if artifact in ("optimized", "final") and any(p.name == "fp16" for p in recipe.passes):
        return "fp16"
    return "fp32" if artifact else None


def check_baseline(run: Run) -> None:
    from optcli.backends.torch_engine import TorchConfig, TorchEngine

    missing = TorchEngine.unavailable(TorchConfig(device=run.recipe.baseline.device))
    if missing is not None and not run.recipe.skip_unavailable:
        raise MissingDependencyError(
            f"baseline.device: {missing.reason}", hint=f"{missing.fix}; or --skip-unavailable"
        )


def check_held_out(run: Run) -> None:
    """Validation must not reuse the calibration source (sample overlap is also counted later)."""
    quantization, settings = run.recipe.quantization, run.recipe.validate_
    if settings.enabled and quantization is not None and quantization.calibration.data == settings.data:
        raise UserInputError(
            "validate.data: is the same source as quantization.calibration.data; validation must use "
            "held-out data (for synthetic data, use another seed)"
        )
