"""Build the plan's engines next to the PyTorch baseline, from the artifacts the pipeline produced."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from optcli.artifacts import Artifact
from optcli.backends import Engine, EngineContext, create_engine
from optcli.backends.torch_engine import TorchConfig, TorchEngine
from optcli.calibration import Batch
from optcli.errors import UserInputError
from optcli.stages.context import StageContext
from optcli.stages.data import LazyModel


@dataclass
class Built:
    engines: list[Engine]  # the baseline first
    descriptions: list[dict[str, Any]]  # the report's `engines` section

    @property
    def baseline(self) -> Engine:
        return self.engines[0]

    def close(self) -> None:
        for engine in self.engines:
            engine.close()


def build_stage(
    ctx: StageContext,
    configs: list[Any],
    baseline: TorchConfig,
    artifacts: dict[str, Artifact],
    model: LazyModel,
    model_section,
    output_names: list[str],
    calibration_batches: Callable[[], Iterator[Batch]] | None,
) -> Built:
    context = engine_context(ctx, artifacts, model, model_section, output_names, calibration_batches)
    engines: list[Engine] = [TorchEngine(baseline, context)]
    with ctx.stage("build") as record:
        engines += [create_engine(config, context) for config in configs]
        distinct_default_labels(engines)
        labels = [e.label for e in engines]
        if len(set(labels)) != len(labels):
            raise UserInputError(f"build: engines share a name {labels}; give each a distinct 'name'")
        for engine in engines:
            engine.load()
            ctx.current_stage = "build"  # loading the baseline may have run the 'load' stage
        descriptions = [describe(ctx, engine, artifacts, engine is engines[0]) for engine in engines]
        record.details = {"engines": labels}
    return Built(engines, descriptions)


def engine_context(
    ctx: StageContext,
    artifacts: dict[str, Artifact],
    model: LazyModel,
    model_section,
    output_names: list[str],
    calibration_batches: Callable[[], Iterator[Batch]] | None = None,
) -> EngineContext:
    """What every engine builds from: the run's artifacts, the PyTorch model (loaded on first use)
    and the recipe's inputs."""
    return EngineContext(
        artifacts={name: a.path for name, a in artifacts.items()},
        precisions={name: a.precision for name, a in artifacts.items()},
        torch_model=model.get,
        input_names=[s.name for s in model_section.inputs],
        output_names=output_names,
        extras={
            "inputs": model_section.inputs,
            "dims": model_section.dims,
            "work_dir": ctx.workspace.root,
            "cache": ctx.cache,  # engines that compile (aoti) keep their packages here; off with --no-cache
            "calibration_batches": calibration_batches or _no_calibration,
        },
    )


def _no_calibration() -> Iterator[Batch]:
    raise UserInputError(
        "build: this engine calibrates, so the recipe needs a quantization.calibration section"
    )


def describe(
    ctx: StageContext, engine: Engine, artifacts: dict[str, Artifact], baseline: bool
) -> dict[str, Any]:
    description = engine.describe()
    artifact = artifacts.get(description.get("artifact", ""))
    description["precision_detail"] = precision_detail(description["precision"], artifact)
    info = artifact.precision_detail if artifact else {}
    if info and info["requested"] in engine.label and info["requested"] != engine.precision:
        ctx.warn(
            f"engine '{engine.label}' runs {description['precision_detail']}: its name says "
            f"{info['requested']}, its artifact does not"
        )
    if description.get("precision_warning"):
        ctx.warn(description["precision_warning"])
    return {"label": engine.label, "baseline": baseline, **description}


def distinct_default_labels(engines: list[Engine]) -> None:
    """Default labels come from the artifact's precision, so two engines can meet on one (an INT8
    recipe whose artifact ended FP32 next to the FP32 engine): those get the artifact name added."""
    labels = [e.label for e in engines]
    for engine in engines:
        config = engine.config
        if labels.count(engine.label) > 1 and config.name is None and hasattr(config, "artifact"):
            artifact, _ = engine.context.artifact(config.artifact, config.engine)
            engine.config = config.model_copy(update={"name": f"{engine.label}-{artifact}"})


def precision_detail(precision: str, artifact: Artifact | None) -> str:
    """'int8 (87% of MACs)': the engine's precision with the quantized share its artifact measured."""
    info = artifact.precision_detail if artifact else {}
    if not info:
        return precision
    if info["precision"] == precision:
        return info["label"]
    if info["quantized_share"] == 0 and info["requested"] != precision:
        return f"{precision} (no {info['requested']} compute op)"
    return precision
