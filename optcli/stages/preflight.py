"""Before any expensive stage: do the files the recipe names exist, and can the quantizer, the
baseline and every engine run on this machine? `check_plan` answers from the recipe alone, so
`optcli recipe validate` and `optcli run --dry-run` report what the run itself would stop on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from optcli.backends import unavailable
from optcli.errors import MissingDependencyError, OptcliError, UserInputError
from optcli.quantization import QUANTIZERS
from optcli.stages.context import Run
from optcli.stages.paths import missing_paths
from optcli.stages.target import add_candidates


@dataclass
class PlanCheck:
    """What preflight found: problems stop the run (bad input, exit 2, before missing backends, 3)."""

    problems: list[OptcliError] = field(default_factory=list)
    runnable: list[Any] = field(default_factory=list)  # build entries that can run here
    skipped: list[dict[str, str]] = field(default_factory=list)  # left out by skip_unavailable
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return min((p.exit_code for p in self.problems), default=0)


def preflight_stage(run: Run, *, engines: bool = True) -> None:
    """Stop on the first problem check_plan finds (exit 2 or 3 with the fix), or mark engines skipped."""
    plan = check_plan(run.recipe, engines=engines)
    if plan.problems:
        raise first_problem(plan.problems)
    if not engines:
        return
    run.report.skipped.extend(plan.skipped)
    run.runnable_build = plan.runnable
    if run.recipe.target is not None:
        add_candidates(run)


def check_plan(recipe: Any, *, engines: bool = True) -> PlanCheck:
    """Every preflight check, run on the recipe alone (no run folder, no user code imported)."""
    plan = PlanCheck()

    def collect(check: Callable[[Any], None]) -> None:
        try:
            check(recipe)
        except OptcliError as exc:  # every message starts with the field it is about
            plan.problems.append(exc)

    plan.problems.extend(missing_paths(recipe))
    collect(check_quantizer)
    collect(check_held_out)
    if engines:
        collect(check_baseline)
        if recipe.skip_unavailable and (missing := baseline_unavailable(recipe)) is not None:
            plan.notes.append(f"baseline.device: {missing.reason}; the baseline will run on the CPU")
        _check_engines(recipe, plan)
    plan.problems.sort(key=lambda p: p.exit_code)  # stable: recipe order within each kind
    return plan


def _check_engines(recipe: Any, plan: PlanCheck) -> None:
    for index, config in enumerate(recipe.build):
        label = config.name or config.engine
        missing = unavailable(config, planned_precision(recipe, getattr(config, "artifact", None)))
        if missing is None:
            plan.runnable.append(config)
        elif recipe.skip_unavailable:
            plan.skipped.append({"engine": label, "reason": missing.reason, "fix": missing.fix})
        else:
            problem = MissingDependencyError(
                f"build.{index} ('{label}') cannot run on this machine: {missing.reason}",
                hint=f"{missing.fix}; see `optcli doctor`, or --skip-unavailable to run the other engines",
            )
            plan.problems.append(problem)


def first_problem(problems: list[OptcliError]) -> OptcliError:
    first = problems[0]
    if len(problems) == 1:
        return first
    more = len(problems) - 1
    note = f" (and {more} more problem{'s' if more > 1 else ''}; `optcli recipe validate` lists them)"
    kind = MissingDependencyError if isinstance(first, MissingDependencyError) else UserInputError
    return kind(first.message + note, hint=first.hint)


def check_class_output(recipe: Any, output_names: list[str]) -> None:
    """validate.class_output against the exported model's outputs: only known once it is exported."""
    choice = recipe.validate_.class_output
    if choice is None or (isinstance(choice, int) and choice < len(output_names)):
        return
    count = len(output_names)
    raise UserInputError(
        f"validate.class_output: {choice!r} is not an output "
        f"of the exported model, which has {count} output{'s' if count != 1 else ''} "
        f"({', '.join(output_names)}); give an index below {count}, a name from model.outputs, or null"
    )


def check_quantizer(recipe: Any) -> None:
    settings = recipe.quantization
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


def baseline_unavailable(recipe: Any):
    if recipe.baseline.device == "cpu":
        return None  # eager FP32 on the CPU needs only torch, a core dependency (and importing it is slow)
    from optcli.backends.torch_engine import TorchConfig, TorchEngine

    return TorchEngine.unavailable(TorchConfig(device=recipe.baseline.device))


def check_baseline(recipe: Any) -> None:
    missing = baseline_unavailable(recipe)
    if missing is not None and not recipe.skip_unavailable:
        raise MissingDependencyError(
            f"baseline.device: {missing.reason}", hint=f"{missing.fix}; or --skip-unavailable"
        )


def check_held_out(recipe: Any) -> None:
    """Validation must not reuse the calibration source (sample overlap is also counted later)."""
    quantization, settings = recipe.quantization, recipe.validate_
    if settings.enabled and quantization is not None and quantization.calibration.data == settings.data:
        raise UserInputError(
            "validate.data: is the same source as quantization.calibration.data; validation must use "
            "held-out data (for synthetic data, use another seed)"
        )
