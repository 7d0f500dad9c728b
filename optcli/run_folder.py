"""What every pipeline (ONNX, llm) does around its stages: lock the run folder, write report.json when
the run starts and whatever way it ends, and record an error or a signal in it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optcli import environment, interrupts
from optcli.cache import StageCache
from optcli.errors import UserInputError
from optcli.manifest import MANIFEST_FILE, manifest_data
from optcli.outcome import classify
from optcli.report.files import artifact_record, write_reports
from optcli.report.model import RunReport, utc_now
from optcli.stages.context import UI, StageContext
from optcli.workspace import Workspace


@contextmanager
def locked_run(
    out_dir: Path, ui: UI, *, wait: bool, cache: StageCache | None, versions: dict[str, str]
) -> Iterator[StageContext]:
    """The run's StageContext while its folder is locked (another run into it exits 2, or waits with
    `wait`) and SIGTERM unwinds like Ctrl-C."""
    with interrupts.trap():
        workspace = Workspace(out_dir)
        with workspace.locked(wait=wait, on_wait=ui.warn) as lock:
            if lock.previous is not None:
                ui.warn(
                    f"the last run in '{out_dir}' ({lock.previous.describe()}) ended without finishing; "
                    "its leftovers are removed"
                )
            yield StageContext(workspace, ui, cache or StageCache(), versions)


@contextmanager
def recorded(ctx: StageContext, recipe: Any, report: RunReport, artifacts: dict[str, Any]) -> Iterator[None]:
    """report.json written first (status 'running': a killed run never leaves the previous verdict
    standing) and again however the block ends: 'finished', or 'error' / 'interrupted' with the stage
    in `error`; the manifest beside it; staging folders removed."""
    try:
        ctx.enter("start")
        write_reports(ctx.workspace, recipe, report)
        report.environment = environment.describe()
        yield
        ctx.enter("report")
        report.status = "finished"
    except SystemExit as exc:  # user code (a model factory, a data callable) called sys.exit()
        error = UserInputError(
            f"stage '{ctx.current_stage}': user code called sys.exit({exc.code!r}) during the run"
        )
        _record_failure(report, ctx, error)
        raise error from exc
    except BaseException as exc:
        _record_failure(report, ctx, exc)
        raise
    finally:
        with interrupts.deferred():  # a signal now is handled once the report is on disk
            report.stages, report.warnings = ctx.records, ctx.warnings
            report.ended_at = utc_now()
            report.artifacts = {name: artifact_record(a, ctx.workspace.root) for name, a in artifacts.items()}
            manifest = manifest_data(artifacts, [stage_entry(r) for r in ctx.records], ctx.workspace.root)
            ctx.workspace.write_json(MANIFEST_FILE, manifest)
            write_reports(ctx.workspace, recipe, report)
            ctx.workspace.cleanup_staging()


def recipe_record(recipe: Any) -> dict[str, Any]:
    resolved = recipe.model_dump(mode="json", by_alias=True)
    return {
        "name": recipe.name,
        "file": str(recipe.source_file) if recipe.source_file else None,
        "sha256": hashlib.sha256(json.dumps(resolved, sort_keys=True).encode()).hexdigest(),
        "resolved": resolved,
    }


def stage_entry(record) -> dict[str, Any]:
    details = record.details or {}
    return {
        "name": record.name,
        "seconds": record.seconds,
        "cached": details.get("cached"),
        "key": details.get("cache_key"),
    }


def _record_failure(report: RunReport, ctx: StageContext, exc: BaseException) -> None:
    outcome = classify(exc)
    report.status = "interrupted" if outcome.kind == "interrupted" else "error"
    report.error = outcome.record(ctx.current_stage)
