"""Runs a `pipeline: llm` recipe on the same stage graph machinery as the ONNX pipeline (StageContext,
StageCache, Workspace and its run lock, report.json/report.md, the one exception -> exit code map):

    preflight ─ load ─ quantize <scheme> ... ─ validate <scheme> ... ─ benchmark ─ report
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optcli.cache import StageCache
from optcli.errors import MissingDependencyError, UserInputError
from optcli.gates import evaluate as gate
from optcli.llm import checkpoint
from optcli.llm.quantize import LLMCOMPRESSOR, LLMCOMPRESSOR_INSTALL
from optcli.llm.recipe import LlmRecipe
from optcli.llm.run_benchmark import benchmark_stage
from optcli.llm.stages import (
    Baseline,
    folder_artifact,
    folder_digest,
    library_versions,
    quantize_stage,
    staged_folder,
    validate_stage,
)
from optcli.llm.text_data import check_disjoint, read_texts, texts_digest, token_windows
from optcli.pipeline import cache_versions
from optcli.quiet import quiet_loggers
from optcli.report.model import RunReport, command_record
from optcli.run_folder import locked_run, recipe_record, recorded
from optcli.stages.context import UI, StageContext

RANDOM_WEIGHTS_NOTE = (
    "random weights (model.random_weights): absolute perplexity is meaningless (the model has learnt "
    "no language); the baseline-vs-quantized divergence (ppl_increase, token_agreement, kl) is still "
    "the quantization's real effect"
)


@dataclass
class LlmReport(RunReport):
    llm: dict[str, Any] = field(default_factory=dict)  # per scheme: checkpoint, metrics, tokens/s

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "pipeline": "llm", "llm": self.llm}


def run_llm_recipe(
    recipe: LlmRecipe, out_dir: Path, ui: UI, *, wait: bool = False, cache: StageCache | None = None
) -> LlmReport:
    """Lock the run folder, run every stage, write report.json at the start and at the end."""
    versions = {**cache_versions(), **library_versions()}
    with locked_run(out_dir, ui, wait=wait, cache=cache, versions=versions) as ctx:
        return _run_locked(recipe, ctx)


def _run_locked(recipe: LlmRecipe, ctx: StageContext) -> LlmReport:
    report = LlmReport(recipe=recipe_record(recipe), command=command_record(sys.argv))
    artifacts: dict[str, Any] = {}
    with recorded(ctx, recipe, report, artifacts):
        ctx.enter("preflight")
        python = preflight(recipe)
        with torch_threads(recipe.threads), checkpoint.no_progress_bars(), quiet_loggers("torch.fx"):
            _execute(ctx, recipe, report, artifacts, python)
    return report


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def preflight(recipe: LlmRecipe) -> Path | None:
    """Exit 2/3 before any stage: the model folder, the libraries, the vLLM interpreter."""
    from optcli.llm.vllm_engine import interpreter

    folder = recipe.model.folder(recipe.base_dir)
    if not folder.is_dir():
        raise UserInputError(f"model.source: folder '{folder}' does not exist")
    checkpoint.check_folder(folder, weights=recipe.model.random_weights is None)
    for package in (checkpoint.TRANSFORMERS, checkpoint.COMPRESSED_TENSORS):
        if not package.found():
            raise MissingDependencyError(
                f"Python package '{package.name}' is not installed (the llm pipeline reads and writes "
                "compressed-tensors checkpoints with transformers)",
                hint=package.install,
            )
    if recipe.quantization.tool == "llmcompressor" and not LLMCOMPRESSOR.found():
        raise MissingDependencyError(
            "quantization.tool llmcompressor: Python package 'llmcompressor' is not installed",
            hint=LLMCOMPRESSOR_INSTALL,
        )
    if recipe.benchmark.enabled and recipe.benchmark.engine == "vllm":
        return interpreter(recipe.benchmark.python, recipe.base_dir)
    return None


def _execute(
    ctx: StageContext, recipe: LlmRecipe, report: LlmReport, artifacts: dict[str, Any], python: Path | None
) -> None:
    source = recipe.model.folder(recipe.base_dir)
    seed = recipe.model.random_weights.seed if recipe.model.random_weights else None
    with ctx.stage("load") as record:
        tokenizer = checkpoint.load_tokenizer(source)
        data = _text_data(recipe, tokenizer)
        model_key = folder_digest(source, seed)
        baseline_folder = source
        if seed is not None:  # the random model, saved once so that every engine reads the same weights
            with staged_folder(ctx, "baseline") as tmp:
                checkpoint.save_plain(checkpoint.load_model(source, seed), source, tmp)
            baseline_folder = ctx.workspace.path("baseline")
            artifacts["baseline"] = folder_artifact("baseline", baseline_folder, "fp32", "load", None)
        record.details = {"source": str(source), "random_weights_seed": seed}
    models: dict[str, Any] = {}

    def baseline_model() -> Any:
        if "baseline" not in models:
            models["baseline"] = checkpoint.load_model(baseline_folder, None)
        return models["baseline"]

    baseline_bytes = checkpoint.weight_bytes(baseline_folder)
    report.llm = {
        "model": {"source": str(source), "random_weights_seed": seed, "baseline_bytes": baseline_bytes},
        "tool": recipe.quantization.tool,
        "libraries": library_versions(),  # the tool's version among them (llmcompressor, compressed-tensors)
        "data": data["summary"],
        "schemes": {},
    }
    if seed is not None:
        report.llm["note"] = RANDOM_WEIGHTS_NOTE
        ctx.warn(RANDOM_WEIGHTS_NOTE)
    uses_calibration = recipe.quantization.tool == "llmcompressor"
    if recipe.quantization.calibration is not None and not uses_calibration:
        ctx.warn(
            "quantization.calibration is not read by tool compressed-tensors (it rounds the "
            "weights to nearest from their own ranges)"
        )
    identity = {
        "model": model_key,
        "calibration": data["calibration_key"] if uses_calibration else None,
        "versions": ctx.versions,
    }
    saved = []
    for scheme in recipe.quantization.scheme:
        done = quantize_stage(
            ctx,
            scheme,
            recipe.quantization,
            lambda: checkpoint.load_model(baseline_folder, None),
            source,
            identity,
            data["calibration"] if uses_calibration else None,
        )
        artifacts[done.artifact.name] = done.artifact
        done.record["size_ratio"] = done.record["bytes"] / baseline_bytes
        report.llm["schemes"][scheme] = {"checkpoint": str(done.folder), **done.record}
        saved.append(done)
    settings = recipe.validate_
    if settings is not None and settings.enabled:
        baseline = Baseline(baseline_model, data["validation"])
        hardware = {k: report.environment.get(k) for k in ("cpu", "cpu_features", "gpu")}
        val_identity = {
            "model": model_key,
            "data": data["validation_key"],
            "hardware": hardware,
            "versions": ctx.versions,
        }
        for done in saved:
            metrics = validate_stage(ctx, done, baseline, val_identity)
            report.llm["schemes"][done.scheme]["metrics"] = metrics
            report.llm["baseline_perplexity"] = metrics["baseline_perplexity"]
            for name, expr in settings.gates.items():
                report.gates.append(
                    gate(name, done.scheme, metrics[name], expr, "vs the FP32 baseline, saved checkpoint")
                )
    report.engines = [{"label": "baseline", "baseline": True, "precision": "fp32", "artifact": "baseline"}]
    report.engines += [
        {"label": d.scheme, "baseline": False, "precision": d.scheme.lower(), "artifact": d.artifact.name}
        for d in saved
    ]
    if recipe.benchmark.enabled:
        report.llm["benchmark"] = benchmark_stage(
            ctx, recipe.benchmark, baseline_model, baseline_folder, saved, python
        )
        for done in saved:
            report.llm["schemes"][done.scheme]["benchmark"] = report.llm["benchmark"]["results"][done.scheme]


def _text_data(recipe: LlmRecipe, tokenizer: Any) -> dict[str, Any]:
    """Calibration and validation windows, checked disjoint (exit 2 if they share text)."""
    out: dict[str, Any] = {
        "calibration": None,
        "validation": None,
        "summary": {},
        "calibration_key": None,
        "validation_key": None,
    }
    sources = []
    calibration = recipe.quantization.calibration
    if calibration is not None:
        sources.append(("calibration", "quantization.calibration.data", calibration))
    if recipe.validate_ is not None and recipe.validate_.enabled:
        sources.append(("validation", "validate.data", recipe.validate_))
    texts = {}
    for role, field_name, section in sources:
        texts[role] = read_texts(section.data, recipe.base_dir, field_name)
        windows = token_windows(texts[role], tokenizer, section.seq_len, section.samples, field_name)
        out[role] = windows
        out[f"{role}_key"] = {
            "texts": texts_digest(texts[role]),
            "seq_len": section.seq_len,
            "windows": len(windows),
        }
        out["summary"][role] = {
            "source": section.data.type,
            "texts": len(texts[role]),
            "windows": len(windows),
            "seq_len": section.seq_len,
            "sha256": out[f"{role}_key"]["texts"],
        }
    if len(texts) == 2:
        check_disjoint(texts["calibration"], texts["validation"], out["calibration"], out["validation"])
        out["summary"]["disjoint"] = True
    return out


def print_preflight(recipe: LlmRecipe, label: str | None, found: list | None = None) -> int:
    """What `--dry-run` and `recipe validate` print: the preflight's verdict and the exit code it gives."""
    from rich.markup import escape

    from optcli.console import console
    from optcli.errors import OptcliError

    code = 0
    try:
        preflight(recipe)
    except OptcliError as exc:
        console.print(f"[red]error:[/] {escape(exc.message)}")
        if exc.hint:
            console.print(f"[dim]hint:[/] {escape(exc.hint)}")
        code = exc.exit_code
        if found is not None:
            found.append(exc)
    if label:
        console.print(f"{label}: {'ok' if code == 0 else f'exit {code}'} (model folder, libraries, vLLM)")
    return code
