"""`optcli diagnose`: the per-layer quantization error ranking of a recipe's quantized model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from optcli.cli_options import JsonOption, NoCacheOption, RecipePath, SetOption, WaitOption
from optcli.console import console
from optcli.errors import RecipeError


def diagnose(
    recipe: RecipePath,
    overrides: SetOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder. Default: runs/<name>-diagnose.")
    ] = None,
    top: Annotated[int, typer.Option(help="How many of the worst layers to show.")] = 10,
    wait: WaitOption = False,
    no_cache: NoCacheOption = False,
    as_json: JsonOption = False,
) -> None:
    """Rank the quantized model's layers by the noise each adds at the model's outputs (on validation data).

    Runs export, passes and quantization (reusing cached results and calibration statistics), then
    quantizes one layer at a time in the FP32 graph and measures the outputs' SQNR, beside each
    layer's own output SQNR. Exclude the worst with `quantization.exclude.modules`, or let
    `quantization.accuracy` do it automatically.
    """
    from optcli.cache import StageCache
    from optcli.cli_output import diagnose_summary, json_output
    from optcli.console import RichUI
    from optcli.pipeline import run_recipe
    from optcli.recipe import load_recipe
    from optcli.report.terminal import render_diagnosis

    summary = json_output("diagnose") if as_json else None
    loaded = load_recipe(recipe, [*(overrides or []), "quantization.diagnose=true"])
    if loaded.quantization is None or loaded.quantization.precision not in ("int8", "fp8"):
        raise RecipeError(
            "diagnose needs quantization.precision int8 or fp8", file=str(recipe), field="quantization"
        )
    out_dir = out or Path(loaded.report.output_dir or Path("runs") / loaded.name).with_name(
        f"{loaded.name}-diagnose"
    )
    if summary is not None:
        summary.report = out_dir / "report.json"
    cache = StageCache(enabled=not no_cache)
    with RichUI() as ui:
        report = run_recipe(loaded, out_dir, ui, through_quantization=True, wait=wait, cache=cache)
    layers = report.quantization.get("diagnosis", [])
    render_diagnosis(layers, top, console)
    console.print(f"report: {escape(str(out_dir / 'report.json'))}")
    if summary is not None:
        summary.emit(diagnose_summary(out_dir / "report.json", layers[:top]))
