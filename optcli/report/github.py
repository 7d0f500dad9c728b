"""GitHub Actions: the job summary page shows what a step appends to $GITHUB_STEP_SUMMARY."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def append_step_summary(markdown: str) -> Path | None:
    """Append `markdown` to the job summary when running under Actions; the file where it went.

    Never fails the run: a summary that cannot be written is one line on stderr."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    path = Path(target)
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as exc:
        print(f"warning: GITHUB_STEP_SUMMARY '{path}' not written: {exc.strerror or exc}", file=sys.stderr)
        return None
    return path
