"""Runs a recipe's stages in order: preflight, load, export, passes, quantize, build, validate,
benchmark, report. Each stage takes the previous stage's artifact and records what it produced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from optcli import environment
from optcli.recipe import Recipe
from optcli.report.model import RunReport
from optcli.specs import ShapeResolver
from optcli.stages.build import build_stage
from optcli.stages.context import UI, Run
from optcli.stages.measure import benchmark_stage, validate_stage
from optcli.stages.model import export_stage, load_stage, passes_stage
from optcli.stages.preflight import preflight_stage
from optcli.stages.quantize import quantize_stage
from optcli.stages.target import select
from optcli.workspace import Workspace


def run_recipe(recipe: Recipe, out_dir: Path, ui: UI, *, through_quantization: bool = False) -> RunReport:
    """Run every stage (or stop after quantization, for `optcli diagnose`).

    The report is written even when a stage raises (status 'error')."""
    workspace = Workspace(out_dir).prepare()
    resolved = recipe.model_dump(mode="json", by_alias=True)
    report = RunReport(
        recipe={
            "name": recipe.name,
            "file": str(recipe.source_file) if recipe.source_file else None,
            "sha256": hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest()[:16],
            "resolved": resolved,
        }
    )
    model = recipe.model
    run = Run(recipe, workspace, ui, report, ShapeResolver(model.inputs, model.dims, model.batch_dim))
    try:
        report.environment = environment.describe()
        preflight_stage(run, engines=not through_quantization)
        load_stage(run)
        export_stage(run)
        passes_stage(run)
        quantize_stage(run)
        if not through_quantization:
            engines = build_stage(run)
            try:
                validate_stage(run, engines)
                benchmark_stage(run, engines)
                if recipe.target is not None:
                    select(run, engines)
            finally:
                for engine in engines:
                    engine.close()
        report.status = "finished"
    except BaseException:
        report.status = "error"
        raise
    finally:
        write_reports(run)
    return report


def write_reports(run: Run) -> None:
    from optcli.report.markdown import render_markdown

    data = run.report.to_dict()
    if "json" in run.recipe.report.formats:
        run.workspace.write_json("report.json", data)
    if "md" in run.recipe.report.formats:
        run.workspace.write_text("report.md", render_markdown(data))
