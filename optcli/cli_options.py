"""Option types shared by optcli's commands (typer-specific code stays in the CLI modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

RecipePath = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        help="Override a recipe field: dotted.path=value (YAML value), repeatable. "
        "E.g. --set quantization.precision=fp8 --set build.0.threads=4",
    ),
]

WaitOption = Annotated[
    bool,
    typer.Option("--wait", help="If another optcli run holds the run folder, wait for it instead of exit 2."),
]

NoCacheOption = Annotated[
    bool,
    typer.Option(
        "--no-cache",
        help="Recompute every stage instead of reusing cached results (cache: $OPTCLI_CACHE_DIR, "
        "default ~/.cache/optcli; see `optcli cache`).",
    ),
]
