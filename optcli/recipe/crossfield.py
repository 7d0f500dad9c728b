"""Checks across recipe sections, attached to Recipe as field validators. Their errors name the field
below the one validated (FieldProblem.subpath), so they point at the line the user has to change."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import ValidationInfo

if TYPE_CHECKING:
    from optcli.recipe.models import BenchmarkSection, ValidateSection


class FieldProblem(ValueError):
    """A cross-field check's error at a field below the one validated (e.g. benchmark.batch_sizes)."""

    def __init__(self, subpath: str, message: str) -> None:
        super().__init__(message)
        self.subpath = tuple(subpath.split("."))


def class_output_is_an_output(cls, section: ValidateSection, info: ValidationInfo) -> ValidateSection:
    """A name becomes its index; an index is checked here when model.outputs names the outputs,
    otherwise once the model is exported (stages.preflight.check_class_output)."""
    model, choice = info.data.get("model"), section.class_output
    if model is None or choice is None:
        return section
    names = model.outputs
    if isinstance(choice, str):
        default = re.fullmatch(r"output_(\d+)", choice)
        if names is not None and choice in names:
            return section.model_copy(update={"class_output": names.index(choice)})
        if names is None and default:
            return section.model_copy(update={"class_output": int(default.group(1))})
        known = f"model.outputs is {names}" if names else "model.outputs is not set (names: output_0, ...)"
        raise FieldProblem("class_output", f"'{choice}' is not an output name ({known})")
    if names is not None and choice >= len(names):
        raise FieldProblem(
            "class_output", f"index {choice} is out of range: model.outputs names {len(names)} {names}"
        )
    return section


def batch_sizes_in_dims(cls, section: BenchmarkSection, info: ValidationInfo) -> BenchmarkSection:
    """Every benchmark batch size must lie in the batch dim's range: the artifacts accept only that."""
    model = info.data.get("model")
    batch = model.dims.get(model.batch_dim) if model is not None else None
    if batch is None:
        return section
    for size in section.batch_sizes:
        if batch.min <= size <= batch.max:
            continue
        above = size > batch.max
        end, limit = ("max", batch.max) if above else ("min", batch.min)
        bound = f"model.dims.{model.batch_dim}.{end} ({limit})"
        raise FieldProblem(
            "batch_sizes",
            f"batch size {size} is {'above' if above else 'below'} {bound}; the artifacts accept only "
            "that range: widen it or change the batch size",
        )
    return section


def mode_settings_agree(cls, section: BenchmarkSection, info: ValidationInfo) -> BenchmarkSection:
    """benchmark.mode slo needs benchmark.slo (and slo needs mode slo); each mode's gates measure
    different things, so a gate of the other mode (shared or an engine's own) would never be decided."""
    from optcli.gates import LATENCY_METRICS, SLO_METRICS

    slo = section.mode == "slo"
    if slo and section.slo is None:
        raise FieldProblem("slo", "benchmark.mode is slo: set the budget here, e.g. slo: {p99_ms: 10}")
    if not slo and section.slo is not None:
        raise FieldProblem("mode", "benchmark.slo is set but mode is latency: set mode: slo to use it")
    if slo and info.data.get("target") is not None:
        raise FieldProblem(
            "mode", "target ranks its candidates by latency at batch_sizes[0]; use mode latency with a target"
        )
    other, allowed = (LATENCY_METRICS, SLO_METRICS) if slo else (SLO_METRICS, LATENCY_METRICS)
    own = [(f"build.{e.name or e.engine}.gates", e.gates) for e in info.data.get("build") or []]
    for where, gates in [("benchmark.gates", section.gates), *own]:
        wrong = sorted(set(gates) & set(other))
        if wrong:
            raise FieldProblem(
                "gates" if where == "benchmark.gates" else "mode",
                f"{where}: {', '.join(wrong)} are benchmark.mode {'latency' if slo else 'slo'} gates; "
                f"mode {section.mode} measures {', '.join(allowed)}",
            )
    model = info.data.get("model")
    batch = model.dims.get(model.batch_dim) if model is not None else None
    if slo and batch is not None and section.slo.max_batch > batch.max:
        raise FieldProblem(
            "slo.max_batch",
            f"{section.slo.max_batch} is above model.dims.{model.batch_dim}.max ({batch.max}); the "
            "artifacts accept only that range: widen it or lower max_batch",
        )
    return section
