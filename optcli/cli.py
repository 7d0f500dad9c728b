"""The `optcli` command: thin wrappers that build a recipe, call the library, and map errors to exit codes."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from optcli.cache_cli import cache_app
from optcli.cli_options import (
    CONTEXT_SETTINGS,
    JsonOption,
    NoCacheOption,
    RecipePath,
    SetOption,
    Target,
    WaitOption,
)
from optcli.compare_cli import compare_reports
from optcli.console import console
from optcli.diagnose_cli import diagnose
from optcli.errors import UserInputError
from optcli.recipe_cli import recipe_app
from optcli.report.cli import report_app
from optcli.sweep_cli import sweep

app = typer.Typer(
    name="optcli",
    help="Optimize a PyTorch model from one recipe: export to ONNX, graph passes, INT8/FP8 "
    "quantization, engines, then accuracy gates and latency vs the PyTorch baseline.\n\n"
    "Exit codes: 0 all gates passed, 1 a gate failed (report written), 2 bad input, "
    "3 missing backend/device, 4 internal error, 130 interrupted (Ctrl-C, SIGINT), "
    "143 terminated (SIGTERM). Once a run has started, report.json says why (status, error).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings=CONTEXT_SETTINGS,
)
app.add_typer(recipe_app, name="recipe")
app.add_typer(cache_app, name="cache")
app.add_typer(report_app, name="report")


def _print_version(value: bool) -> None:
    if value:
        from optcli import __version__

        typer.echo(f"optcli {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks on errors (or set OPTCLI_DEBUG=1).")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            help="Let torch, ONNX Runtime, ModelOpt, NNCF and torchao log what optcli silences "
            "(INFO and up, on stderr; or set OPTCLI_VERBOSE=1). The exporter's own output stays in "
            "<run>/logs/export.log.",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_print_version, help="Print optcli's version and exit."
        ),
    ] = False,
) -> None:
    """Global options; --debug and --verbose are handled by main() so they work anywhere on the command
    line."""


@app.command()
def run(
    recipe: RecipePath,
    overrides: SetOption = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Run folder. Default: report.output_dir or runs/<name>."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the verdict line.")] = False,
    skip_unavailable: Annotated[
        bool,
        typer.Option(
            "--skip-unavailable",
            help="Engines that cannot run here (no GPU, package missing) are reported as skipped, "
            "not exit 3. Same as --set skip_unavailable=true.",
        ),
    ] = False,
    target: Annotated[
        Target | None,
        typer.Option(
            help="Build every available candidate for this target and choose the fastest that passes "
            "the validate gates (auto: cpu). Same as --set target=cpu.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the resolved recipe and the stage plan, and check that the files it names exist "
            "and its engines can run here (exit 2 or 3 as the run would); run nothing.",
        ),
    ] = False,
    offline: Annotated[
        bool,
        typer.Option(
            "--offline", help="With --dry-run: check the recipe's schema only, not files or engines."
        ),
    ] = False,
    wait: WaitOption = False,
    no_cache: NoCacheOption = False,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            help="A stored report.json (e.g. the main branch's): the recipe's `regression` rules "
            "become gates of this run (default: p50_ms '<= +5%', cosine '>= -0.0005', accuracy '>= -0.002').",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run a recipe end to end and write report.json / report.md to the run folder.

    The last line is the verdict, or on exit 0 the artifact to deploy.

    Example: optcli run recipes/example.yaml --set quantization.precision=fp8 --out runs/try1
    """
    from optcli.cache import StageCache
    from optcli.cli_output import annotate_gates, json_output, run_summary, verdict_lines
    from optcli.console import RichUI
    from optcli.pipeline import run_recipe
    from optcli.recipe import load_recipe
    from optcli.recipe_cli import print_preflight
    from optcli.report.terminal import render_terminal

    summary = json_output("run") if as_json else None

    extra = [
        *(["skip_unavailable=true"] if skip_unavailable else []),
        *([f"target={target.value}"] if target else []),
    ]
    loaded = load_recipe(recipe, [*(overrides or []), *extra])
    out_dir = out or Path(loaded.report.output_dir or Path("runs") / loaded.name)
    if offline and not dry_run:
        raise UserInputError("--offline: only applies with --dry-run (a run always checks files and engines)")
    from optcli.compare import Against
    from optcli.compare_cli import render_regression

    base = Against.load(against, loaded.name) if against else None  # a bad file: exit 2 before running
    if dry_run:
        resolved = loaded.model_dump(mode="json", by_alias=True)
        if summary is None:
            typer.echo(json.dumps(resolved, indent=2))
        console.print(f"plan: {', '.join(_plan_steps(loaded))} -> {out_dir}")
        code = 0
        if offline:
            console.print("preflight: skipped (--offline): files and engines not checked")
        else:
            code = print_preflight(loaded, label="preflight", engines_plan=True)
        if summary is not None:
            verdict = "pass" if code == 0 else "error"
            summary.emit({"command": "run", "verdict": verdict, "exit_code": code, "dry_run": resolved})
        raise typer.Exit(code)
    if summary is not None:
        summary.report = out_dir / "report.json"
    cache = StageCache(enabled=not no_cache)
    with RichUI(quiet=quiet) as ui:
        report = run_recipe(loaded, out_dir, ui, wait=wait, cache=cache, against=base)
    data = report.to_dict()
    if not quiet:
        render_terminal(data, console)
        if data.get("regression"):
            render_regression(data["regression"], console)
    code = 0 if not report.failed_gates else 1
    annotate_gates(data)
    for line in verdict_lines(data, out_dir / "report.json", code, quiet=quiet):
        console.print(line, soft_wrap=True)  # one line each, however long: CI greps them
    if summary is not None:
        summary.emit(run_summary(data, out_dir / "report.json", code))
    raise typer.Exit(code)


# After `run`, so that `optcli -h` lists the commands in the order a user meets them.
app.command()(diagnose)
app.command(name="compare")(compare_reports)
app.command()(sweep)


def _plan_steps(recipe) -> list[str]:
    """The stage list the recipe alone gives (for --offline, which does not look at this machine)."""
    if hasattr(recipe, "plan_steps"):  # pipeline: llm (optcli/llm/recipe.py)
        return recipe.plan_steps()
    steps = ["load", f"export ({recipe.export.exporter})"] + [f"pass {p.name}" for p in recipe.passes]
    if recipe.quantization and recipe.quantization.precision != "fp32":
        steps.append(f"quantize {recipe.quantization.precision} ({recipe.quantization.quantizer})")
    steps.append("build " + ", ".join(e.name or e.engine for e in recipe.build))
    if recipe.validate_.enabled:
        steps.append("validate")
    if recipe.benchmark.enabled:
        steps.append(f"benchmark batch {recipe.benchmark.batch_sizes}")
    return steps


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Show which engines and packages are usable here (GPU, TensorRT, ORT providers, ModelOpt, torchao).

    Each missing piece comes with the command that installs it.
    """
    from optcli.doctor import run_checks
    from optcli.report.terminal import render_doctor

    checks = run_checks()
    if as_json:
        typer.echo(json.dumps([c.to_dict() for c in checks], indent=2))
        return
    render_doctor(checks, console)


@app.command()
def version() -> None:
    """Print optcli's version and the versions of the packages it uses."""
    from optcli.environment import package_versions

    for package, ver in package_versions().items():
        typer.echo(f"{package} {ver}")


def main() -> None:
    """Entry point: the single error boundary. `outcome.classify` maps each exception to its exit code,
    the same mapping the report's `error` record uses."""
    from optcli import cli_output, interrupts, quiet

    debug = "--debug" in sys.argv or os.environ.get("OPTCLI_DEBUG") == "1"
    if "--verbose" in sys.argv:
        os.environ[quiet.VERBOSE_ENV] = "1"
    if quiet.verbose():
        logging.basicConfig(
            level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
        )
    # accepted anywhere, not only before the command
    argv = [a for a in sys.argv[1:] if a not in ("--debug", "--verbose")]
    with interrupts.trap():  # SIGTERM unwinds like Ctrl-C: staging removed, report written
        try:
            code = app(args=argv, standalone_mode=False)
            if code == 130:  # Typer turns any KeyboardInterrupt into Exit(130) before we see it
                raise interrupts.Interrupted(interrupts.received() or signal.SIGINT)
        except typer.Exit as exc:
            cli_output.finish_unfinished(exc.exit_code)
            sys.exit(exc.exit_code)
        except SystemExit:
            raise
        except BaseException as exc:
            if isinstance(exc, typer.Abort):  # Typer wraps EOFError in Abort; a bare one is a Ctrl-C'd prompt
                exc = exc.__cause__ or KeyboardInterrupt()
            if isinstance(exc, Exception) and hasattr(exc, "show") and hasattr(exc, "exit_code"):
                exc.show()  # a usage error from Typer's Click
                cli_output.annotate(exc.format_message())
                if "--json" in argv:  # the command never started: its summary says why
                    output = cli_output.active_json() or cli_output.json_output(" ".join(argv[:1]))
                    output.emit_error("usage", exc.exit_code, exc.format_message(), None)
                sys.exit(exc.exit_code)
            sys.exit(_print_error(exc, debug))
        cli_output.finish_unfinished(code if isinstance(code, int) else 0)
        sys.exit(code if isinstance(code, int) else 0)


def _print_error(exc: BaseException, debug: bool) -> int:
    from optcli.cli_output import active_json, annotate_exception
    from optcli.outcome import classify

    outcome = classify(exc)
    if debug:
        console.print_exception()
    if outcome.kind == "interrupted":
        console.print(f"[yellow]{escape(outcome.message)}[/]: no partial artifact was left in place")
    else:
        label = "internal error" if outcome.kind == "internal" else "error"
        console.print(f"[red]{label}:[/] {escape(outcome.message)}")
        if outcome.hint:
            console.print(f"[dim]hint:[/] {escape(outcome.hint)}")
        annotate_exception(exc, outcome.message)
    output = active_json()
    if output is not None:
        output.emit_error(outcome.kind, outcome.exit_code, outcome.message, outcome.hint)
    return outcome.exit_code
