"""Before any expensive stage: do the files the recipe names exist, and can the quantizer, the
baseline and every engine run on this machine? `check_plan` answers from the recipe alone, so
`optcli recipe validate` and `optcli run --dry-run` report what the run itself would stop on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optcli.errors import MissingDependencyError, OptcliError, UserInputError
from optcli.plan import Machine, Plan, make_plan
from optcli.quantization import QUANTIZERS
from optcli.stages.paths import missing_paths


@dataclass
class PlanCheck:
    """What preflight found: problems stop the run (bad input, exit 2, before missing backends, 3)."""

    plan: Plan
    problems: list[OptcliError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def skipped(self) -> list[dict[str, str]]:  # left out by skip_unavailable
        return [
            {"engine": e.label, "reason": e.missing.reason, "fix": e.missing.fix}
            for e in self.plan.skipped
            if e.origin == "recipe"
        ]

    @property
    def exit_code(self) -> int:
        return min((p.exit_code for p in self.problems), default=0)


def preflight(recipe: Any, machine: Machine, *, engines: bool = True) -> PlanCheck:
    """The plan, or the first problem check_plan finds (exit 2 or 3 with the fix)."""
    checked = check_plan(recipe, engines=engines, machine=machine)
    if checked.problems:
        raise first_problem(checked.problems)
    return checked


def check_plan(recipe: Any, *, engines: bool = True, machine: Machine | None = None) -> PlanCheck:
    """Every preflight check, run on the recipe alone (no run folder, no user code imported)."""
    plan = make_plan(recipe, machine or Machine.here(), through_quantization=not engines)
    checked = PlanCheck(plan)

    def collect(check: Callable[[Any], None]) -> None:
        try:
            check(recipe)
        except OptcliError as exc:  # every message starts with the field it is about
            checked.problems.append(exc)

    checked.problems.extend(missing_paths(recipe))
    collect(check_quantizer)
    collect(check_held_out)
    if engines:
        collect(check_baseline)
        if recipe.skip_unavailable and (missing := baseline_unavailable(recipe)) is not None:
            checked.notes.append(f"baseline.device: {missing.reason}; the baseline will run on the CPU")
        _check_engines(recipe, checked)
    checked.problems.sort(key=lambda p: p.exit_code)  # stable: recipe order within each kind
    return checked


def _check_engines(recipe: Any, checked: PlanCheck) -> None:
    planned = [e for e in checked.plan.engines if e.origin == "recipe"]
    for index, engine in enumerate(planned):
        if engine.artifact is not None and engine.artifact not in checked.plan.artifacts:
            checked.problems.append(
                UserInputError(
                    f"build.{index}.artifact: engine '{engine.label}' runs '{engine.artifact}', which this "
                    f"recipe does not produce (it produces: {', '.join(checked.plan.artifacts)})"
                )
            )
        elif engine.missing is not None and not recipe.skip_unavailable:
            checked.problems.append(
                MissingDependencyError(
                    f"build.{index} ('{engine.label}') cannot run on this machine: {engine.missing.reason}",
                    hint=f"{engine.missing.fix}; see `optcli doctor`, or --skip-unavailable to run the "
                    "other engines",
                )
            )


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


def check_id_ranges(recipe: Any, model_path: Path, data: Any) -> None:
    """Ids in the data against the sizes of the tables they index in the exported model (exit 2
    naming the input), read before any engine runs: ORT's Gather fails on such an id, a quantized
    table (GatherBlockQuantized) silently reads zeros, PyTorch raises an IndexError. Only the data
    is read, no model is run; a model without tables (or whose ids it computes itself) skips it."""
    from optcli.onnx_io import load_model
    from optcli.quantization.embeddings import check_ids, id_limits

    limits = id_limits(load_model(model_path, load_external_data=False))
    if not limits:
        return
    accuracy = recipe.quantization.accuracy if recipe.quantization is not None else None
    reads = [(data.calibration, None)] if data.calibration is not None else []
    if recipe.validate_.enabled:  # with the samples accuracy recovery tunes on before the judged ones
        reads.append((data.validation, data.validation.samples + (accuracy.samples if accuracy else 0)))
    for stream, samples in reads:
        first = 0
        for batch in stream.batches(samples=samples):
            check_ids(batch, limits, stream.field, first)
            first += len(next(iter(batch.values())))


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
