"""Build every engine of the recipe next to the PyTorch baseline."""

from __future__ import annotations

from collections.abc import Iterator

from optcli.backends import Engine, EngineContext, create_engine
from optcli.backends.torch_engine import TorchConfig, TorchEngine
from optcli.calibration import Batch, SourceContext, stream
from optcli.errors import UserInputError
from optcli.stages.context import Run


def calibration_batches(run: Run) -> Iterator[Batch]:
    """The recipe's calibration stream, for engines that calibrate themselves (torch-tensorrt + ModelOpt)."""
    quantization = run.recipe.quantization
    if quantization is None:
        raise UserInputError(
            "build: this engine calibrates, so the recipe needs a quantization.calibration section"
        )
    calibration = quantization.calibration
    ctx = SourceContext(run.resolver, run.recipe.base_dir, "quantization.calibration.data")
    return stream(calibration.data, ctx, batch_size=calibration.batch_size, samples=calibration.samples)


def baseline_config(run: Run) -> TorchConfig:
    """Eager FP32 on the recipe's baseline device; CPU when CUDA is missing and skipping was asked for."""
    settings = run.recipe.baseline
    config = TorchConfig(
        name="pytorch-eager-fp32",
        device=settings.device,
        threads=settings.threads or run.recipe.benchmark.threads,
    )
    if TorchEngine.unavailable(config) is not None and run.recipe.skip_unavailable:
        run.report.warnings.append("baseline.device cuda is not available here; the baseline ran on the CPU")
        config = config.model_copy(update={"device": "cpu"})
    if settings.device == "cuda" and config.device == "cuda":
        config = config.model_copy(update={"name": "pytorch-eager-fp32-cuda"})
    return config


def build_stage(run: Run) -> list[Engine]:
    context = EngineContext(
        artifacts=run.artifacts,
        precisions=run.precisions,
        torch_model=lambda: run.torch_model,
        input_names=[s.name for s in run.recipe.model.inputs],
        output_names=run.output_names,
        extras={
            "inputs": run.recipe.model.inputs,
            "dims": run.recipe.model.dims,
            "work_dir": run.workspace.root,
            "calibration_batches": lambda: calibration_batches(run),
        },
    )
    baseline = TorchEngine(baseline_config(run), context)
    engines: list[Engine] = [baseline]
    with run.stage("build") as record:
        for config in run.runnable_build:
            if run.recipe.benchmark.threads and getattr(config, "threads", "n/a") is None:
                config = config.model_copy(update={"threads": run.recipe.benchmark.threads})
            engines.append(create_engine(config, context))
        distinct_default_labels(engines)
        labels = [e.label for e in engines]
        if len(set(labels)) != len(labels):
            raise UserInputError(f"build: engines share a name {labels}; give each a distinct 'name'")
        for engine in engines:
            engine.load()
        descriptions = [e.describe() for e in engines]
        artifacts = run.report.quantization.get("artifacts", {})
        for engine, description in zip(engines, descriptions):
            description["precision_detail"] = precision_detail(description, artifacts)
            info = artifacts.get(description.get("artifact", ""))
            if info and info["requested"] in engine.label and info["requested"] != engine.precision:
                run.report.warnings.append(
                    f"engine '{engine.label}' runs {description['precision_detail']}: its name says "
                    f"{info['requested']}, its artifact does not"
                )
        run.report.warnings += [d["precision_warning"] for d in descriptions if d.get("precision_warning")]
        run.report.engines = [
            {"label": e.label, "baseline": e is baseline, **d} for e, d in zip(engines, descriptions)
        ]
        record.details = {"engines": labels}
    return engines


def distinct_default_labels(engines: list[Engine]) -> None:
    """Default labels come from the artifact's precision, so two engines can meet on one (an INT8
    recipe whose artifact ended FP32 next to the FP32 engine): those get the artifact name added."""
    labels = [e.label for e in engines]
    for engine in engines:
        config = engine.config
        if labels.count(engine.label) > 1 and config.name is None and hasattr(config, "artifact"):
            artifact, _ = engine.context.artifact(config.artifact, config.engine)
            engine.config = config.model_copy(update={"name": f"{engine.label}-{artifact}"})


def precision_detail(description: dict, artifacts: dict[str, dict]) -> str:
    """'int8 (87% of MACs)': the engine's precision with the quantized share its artifact measured."""
    precision = description["precision"]
    info = artifacts.get(description.get("artifact", ""))
    if not info:
        return precision
    if info["precision"] == precision:
        return info["label"]
    if info["quantized_share"] == 0 and info["requested"] != precision:
        return f"{precision} (no {info['requested']} compute op)"
    return precision
