"""Before any expensive stage: can every engine in the recipe run on this machine?"""

from __future__ import annotations

from optcli.backends import unavailable
from optcli.errors import MissingDependencyError, UserInputError
from optcli.quantization import QUANTIZERS
from optcli.stages.context import Run


def preflight_stage(run: Run) -> None:
    """Exit 3 with the fix for the first engine that cannot run, or mark them skipped when asked."""
    check_quantizer(run)
    runnable = []
    for index, config in enumerate(run.recipe.build):
        label = config.name or config.engine
        missing = unavailable(config)
        if missing is None:
            runnable.append(config)
            continue
        if not run.recipe.skip_unavailable:
            raise MissingDependencyError(
                f"build.{index} ('{label}') cannot run on this machine: {missing.reason}",
                hint=f"{missing.fix}; see `optcli doctor`, or --skip-unavailable to run the other engines",
            )
        run.report.skipped.append({"engine": label, "reason": missing.reason, "fix": missing.fix})
        run.report.warnings.append(f"engine '{label}' skipped: {missing.reason}")
    run.runnable_build = runnable


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
    missing = quantizer.unavailable(settings)
    if missing is not None:
        raise MissingDependencyError(
            f"quantization.quantizer '{quantizer.name}': {missing.reason}", hint=missing.fix
        )
