"""Runs a recipe's stages in order: preflight, load, export, passes, quantize, build, validate,
benchmark, report. Each stage takes the previous stage's artifact and records what it produced.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from optcli import environment, interrupts
from optcli.errors import UserInputError
from optcli.outcome import classify
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


def run_recipe(
    recipe: Recipe,
    out_dir: Path,
    ui: UI,
    *,
    through_quantization: bool = False,
    wait: bool = False,
) -> RunReport:
    """Run every stage (or stop after quantization, for `optcli diagnose`).

    The run folder is locked for the whole run (another run into it exits 2, or waits with
    `wait`). report.json is written when the run starts (status 'running') and again when it
    ends, also when a stage raises or a signal stops it (status 'error' / 'interrupted', with
    the stage in `error`)."""
    with interrupts.trap():
        workspace = Workspace(out_dir)
        with workspace.locked(wait=wait, on_wait=ui.warn) as lock:
            if lock.previous is not None:
                ui.warn(
                    f"the last run in '{out_dir}' ({lock.previous.describe()}) ended without finishing; "
                    "its leftovers are removed"
                )
            return _run_locked(recipe, workspace, ui, through_quantization)


def _run_locked(recipe: Recipe, workspace: Workspace, ui: UI, through_quantization: bool) -> RunReport:
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
        run.enter("start")
        # A report of the previous run must not stand while this one runs (or if it is killed).
        write_reports(run)
        report.environment = environment.describe()
        run.enter("preflight")
        preflight_stage(run, engines=not through_quantization)
        _run_stages(run, through_quantization)
        run.enter("report")
        report.status = "finished"
    except SystemExit as exc:  # user code (a model factory, a data callable) called sys.exit()
        error = UserInputError(
            f"stage '{run.current_stage}': user code called sys.exit({exc.code!r}) during the run"
        )
        _record_failure(run, error)
        raise error from exc
    except BaseException as exc:
        _record_failure(run, exc)
        raise
    finally:
        with interrupts.deferred():  # a signal now is handled once the report is on disk
            write_reports(run)
            workspace.cleanup_staging()
    return report


def _run_stages(run: Run, through_quantization: bool) -> None:
    for name, stage in (
        ("load", load_stage),
        ("export", export_stage),
        ("passes", passes_stage),
        ("quantize", quantize_stage),
    ):
        run.enter(name)
        stage(run)
    if through_quantization:
        return
    run.enter("build")
    engines = build_stage(run)
    try:
        run.enter("validate")
        validate_stage(run, engines)
        run.enter("benchmark")
        benchmark_stage(run, engines)
        if run.recipe.target is not None:
            run.enter("select")
            select(run, engines)
    finally:
        for engine in engines:
            engine.close()


def _record_failure(run: Run, exc: BaseException) -> None:
    outcome = classify(exc)
    run.report.status = "interrupted" if outcome.kind == "interrupted" else "error"
    run.report.error = outcome.record(run.current_stage)


def write_reports(run: Run) -> None:
    from optcli.report.markdown import render_markdown

    data = run.report.to_dict()
    if "json" in run.recipe.report.formats:
        run.workspace.write_json("report.json", data)
    if "md" in run.recipe.report.formats:
        run.workspace.write_text("report.md", render_markdown(data))
