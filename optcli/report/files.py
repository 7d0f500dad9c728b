"""The report files of a run folder: report.json, report.md, report.junit.xml, report.html, and the
GitHub Actions job summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optcli.report.github import append_step_summary
from optcli.report.html import render_html
from optcli.report.junit_cases import render_junit
from optcli.report.markdown import render_markdown

if TYPE_CHECKING:
    from optcli.artifacts import Artifact
    from optcli.recipe import Recipe
    from optcli.report.model import RunReport
    from optcli.workspace import Workspace


def artifact_record(artifact: Artifact, root: Path) -> dict[str, Any]:
    """What a CI step needs to pick up and check an artifact: its files, their bytes, the full digest."""
    files = artifact.files()
    sizes = {str(p.relative_to(artifact.path.parent)): p.stat().st_size for p in files if p.is_file()}
    path = artifact.path.resolve()
    return {
        "path": str(path.relative_to(root.resolve())) if path.is_relative_to(root.resolve()) else str(path),
        "files": sizes,
        "bytes": sum(sizes.values()),
        "sha256": artifact.sha256,
        "precision": artifact.precision,
    }


def write_reports(workspace: Workspace, recipe: Recipe, report: RunReport) -> None:
    """The formats the recipe asks for; the first call (status running) replaces any previous run's
    files, so a killed run never leaves an earlier verdict behind. Under GitHub Actions the final
    Markdown summary is also appended to the job summary."""
    data = report.to_dict()
    formats = recipe.report.formats
    if "json" in formats:
        workspace.write_json("report.json", data)
    markdown = render_markdown(data)
    if "md" in formats:
        workspace.write_text("report.md", markdown)
    if "junit" in formats:
        workspace.write_text("report.junit.xml", render_junit(data))
    if "html" in formats:
        workspace.write_text("report.html", render_html(data, _timings(workspace, data)))
    if report.status != "running":
        append_step_summary(markdown)


def _timings(workspace: Workspace, data: dict[str, Any]) -> dict[str, Any] | None:
    """The benchmark's raw timings (<run>/timings.json), for the HTML distributions."""
    name = (data.get("benchmark") or {}).get("timings_file")
    path = workspace.path(name) if name else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
