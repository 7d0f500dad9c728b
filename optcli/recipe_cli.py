"""`optcli recipe validate|schema|init`: check, document and start recipes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from optcli.cli_options import CONTEXT_SETTINGS, JsonOption, RecipePath, SetOption
from optcli.console import console
from optcli.errors import RecipeError

recipe_app = typer.Typer(
    help="Check, document and start recipes.", no_args_is_help=True, context_settings=CONTEXT_SETTINGS
)


@recipe_app.command("validate")
def recipe_validate(
    recipe: RecipePath,
    overrides: SetOption = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Check the schema only, not files or engines.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Check a recipe without running it: exit 0, or exit 2 listing every problem with file:line and field.

    Then, unless --offline, the run's preflight checks: the files and globs the recipe names exist
    (exit 2), and its quantizer, baseline and engines can run on this machine (exit 3 with the fix).
    """
    from optcli.cli_output import annotate_exception, json_output
    from optcli.recipe import all_errors, parse_recipe

    summary = json_output("recipe validate") if as_json else None
    if not recipe.is_file():
        raise RecipeError(
            "recipe file does not exist" if not recipe.exists() else "not a file", file=str(recipe)
        )
    text = recipe.read_text(encoding="utf-8")
    problems = all_errors(text, source=recipe, overrides=overrides)
    code = 2 if problems else 0
    for problem in problems:
        console.print(f"[red]error:[/] {escape(str(problem))}")
        annotate_exception(problem, problem.message)
    if not problems and not offline:
        loaded = parse_recipe(text, source=recipe, overrides=overrides)
        code = print_preflight(loaded, label=None, found=problems)
    if not code:
        scope = " (schema only: --offline)" if offline else ""
        console.print(f"[green]ok[/] {escape(str(recipe))}{scope}")
    if summary is not None:
        summary.emit(
            {
                "command": "recipe validate",
                "verdict": "pass" if code == 0 else "error",
                "exit_code": code,
                "recipe": str(recipe),
                "problems": [_problem_record(p) for p in problems],
                "error": None,
            }
        )
    raise typer.Exit(code)


def _problem_record(problem: Exception) -> dict[str, object]:
    keys = ("file", "line", "field", "message", "hint", "exit_code")
    return {k: getattr(problem, k) for k in keys if getattr(problem, k, None) is not None}


def print_preflight(
    loaded, *, label: str | None, engines_plan: bool = False, found: list | None = None
) -> int:
    """Print what the run's preflight would stop on (and, with `engines_plan`, the planned engines
    with their artifact, precision and availability); returns the exit code the run would have.
    The problems are appended to `found` when given."""
    if getattr(loaded, "pipeline", None) == "llm":
        from optcli.llm.pipeline import print_preflight as print_llm_preflight

        return print_llm_preflight(loaded, label, found)
    from optcli.cli_output import annotate_exception
    from optcli.stages.preflight import check_plan

    checked = check_plan(loaded)
    if engines_plan:
        plan = checked.plan
        for engine in plan.describe()["engines"]:
            where = f"{engine['artifact']} ({engine['precision']})" if engine["artifact"] else "PyTorch"
            state = "available" if engine["available"] else f"not available: {engine['reason']}"
            console.print(f"  {engine['origin']} engine {escape(engine['engine'])}: {where}, {escape(state)}")
        for missing in plan.not_available:
            console.print(f"  target candidate {missing['engine']} left out: {escape(missing['reason'])}")
    for note in checked.notes + [f"{s['engine']} will be skipped: {s['reason']}" for s in checked.skipped]:
        console.print(f"[yellow]note:[/] {escape(note)}")
    for problem in checked.problems:
        console.print(f"[red]error:[/] {escape(problem.message)}")
        if problem.hint:
            console.print(f"[dim]hint:[/] {escape(problem.hint)}")
        annotate_exception(problem, problem.message)
    if found is not None:
        found.extend(checked.problems)
    if label:
        found = f"{len(checked.problems)} problem(s), exit {checked.exit_code}" if checked.problems else "ok"
        console.print(f"{label}: {found} (files the recipe names, quantizer, baseline, engines)")
    return checked.exit_code


@recipe_app.command("schema")
def recipe_schema_cmd() -> None:
    """Print the recipe JSON Schema (for editors: `# yaml-language-server: $schema=recipe.schema.json`)."""
    from optcli.recipe import recipe_schema

    typer.echo(json.dumps(recipe_schema(), indent=2))


@recipe_app.command("init")
def recipe_init(
    model: Annotated[
        str,
        typer.Option(help="Model factory 'pkg.module:fn' or 'file.py:fn', or a .pt2/TorchScript file."),
    ],
    inputs: Annotated[
        list[str],
        typer.Option(
            "--input",
            "-i",
            help="Input 'name:dim,dim,...[:dtype]', e.g. 'x:batch,3,224,224'. Repeatable.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the recipe.")] = Path(
        "recipe.yaml"
    ),
    name: Annotated[str | None, typer.Option(help="Recipe name. Default: from the model.")] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing file.")] = False,
) -> None:
    """Write a starter recipe (INT8 with ONNX Runtime, synthetic data) to edit and commit."""
    from optcli.recipe.starter import write_starter

    path = write_starter(model, inputs, output, name=name, force=force)
    console.print(
        f"[green]wrote[/] {escape(str(path))}; check it with: optcli recipe validate {escape(str(path))}"
    )
