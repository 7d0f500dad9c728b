"""The `optcli` command: thin wrappers that build a recipe, call the library, and map errors to exit codes."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from optcli.cache_cli import cache_app
from optcli.cli_options import NoCacheOption, RecipePath, SetOption, WaitOption
from optcli.console import console
from optcli.errors import RecipeError, UserInputError
from optcli.recipe_cli import recipe_app

app = typer.Typer(
    name="optcli",
    help="Optimize a PyTorch model from one recipe: export to ONNX, graph passes, INT8/FP8 "
    "quantization, engines, then accuracy gates and latency vs the PyTorch baseline.\n\n"
    "Exit codes: 0 all gates passed, 1 a gate failed (report written), 2 bad input, "
    "3 missing backend/device, 4 internal error, 130 interrupted (Ctrl-C, SIGINT), "
    "143 terminated (SIGTERM). Once a run has started, report.json says why (status, error).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(recipe_app, name="recipe")
app.add_typer(cache_app, name="cache")


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks on errors (or set OPTCLI_DEBUG=1).")
    ] = False,
) -> None:
    """Global options; --debug is handled by main() so it works anywhere on the command line."""


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
        str | None,
        typer.Option(
            help="Build every available candidate for this target (cpu, gpu, auto) and choose the fastest "
            "that passes the validate gates. Same as --set target=cpu.",
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
) -> None:
    """Run a recipe end to end and write report.json / report.md to the run folder.

    Example: optcli run recipes/example.yaml --set quantization.precision=fp8 --out runs/try1
    """
    from optcli.cache import StageCache
    from optcli.console import RichUI
    from optcli.pipeline import run_recipe
    from optcli.recipe import load_recipe
    from optcli.recipe_cli import print_preflight
    from optcli.report.terminal import render_terminal

    extra = [
        *(["skip_unavailable=true"] if skip_unavailable else []),
        *([f"target={target}"] if target else []),
    ]
    loaded = load_recipe(recipe, [*(overrides or []), *extra])
    out_dir = out or Path(loaded.report.output_dir or Path("runs") / loaded.name)
    if offline and not dry_run:
        raise UserInputError("--offline: only applies with --dry-run (a run always checks files and engines)")
    if dry_run:
        typer.echo(json.dumps(loaded.model_dump(mode="json", by_alias=True), indent=2))
        console.print(f"plan: {', '.join(_plan_steps(loaded))} -> {out_dir}")
        if offline:
            console.print("preflight: skipped (--offline): files and engines not checked")
            return
        raise typer.Exit(print_preflight(loaded, label="preflight", engines_plan=True))
    cache = StageCache(enabled=not no_cache)
    report = run_recipe(loaded, out_dir, RichUI(quiet=quiet), wait=wait, cache=cache)
    data = report.to_dict()
    if not quiet:
        render_terminal(data, console)
    failed = report.failed_gates
    verdict = "[green]PASS[/]" if not failed else f"[red]FAIL[/] ({len(failed)} gate(s) failed)"
    if report.skipped:
        verdict += f" [yellow]({len(report.skipped)} engine(s) skipped, not run)[/]"
    console.print(f"{verdict}  report: {out_dir / 'report.json'}")
    raise typer.Exit(0 if not failed else 1)


def _plan_steps(recipe) -> list[str]:
    """The stage list the recipe alone gives (for --offline, which does not look at this machine)."""
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
def diagnose(
    recipe: RecipePath,
    overrides: SetOption = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder. Default: runs/<name>-diagnose.")
    ] = None,
    top: Annotated[int, typer.Option(help="How many of the worst layers to show.")] = 10,
    wait: WaitOption = False,
    no_cache: NoCacheOption = False,
) -> None:
    """Rank the quantized model's layers by the noise each adds at the model's outputs (on validation data).

    Runs export, passes and quantization (reusing cached results and calibration statistics), then
    quantizes one layer at a time in the FP32 graph and measures the outputs' SQNR, beside each
    layer's own output SQNR. Exclude the worst with `quantization.exclude.modules`, or let
    `quantization.accuracy` do it automatically.
    """
    from optcli.cache import StageCache
    from optcli.console import RichUI
    from optcli.pipeline import run_recipe
    from optcli.recipe import load_recipe
    from optcli.report.terminal import render_diagnosis

    loaded = load_recipe(recipe, [*(overrides or []), "quantization.diagnose=true"])
    if loaded.quantization is None or loaded.quantization.precision not in ("int8", "fp8"):
        raise RecipeError(
            "diagnose needs quantization.precision int8 or fp8", file=str(recipe), field="quantization"
        )
    out_dir = out or Path(loaded.report.output_dir or Path("runs") / loaded.name).with_name(
        f"{loaded.name}-diagnose"
    )
    cache = StageCache(enabled=not no_cache)
    report = run_recipe(loaded, out_dir, RichUI(), through_quantization=True, wait=wait, cache=cache)
    render_diagnosis(report.quantization.get("diagnosis", []), top, console)
    console.print(f"report: {out_dir / 'report.json'}")


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
    from optcli import interrupts

    debug = "--debug" in sys.argv or os.environ.get("OPTCLI_DEBUG") == "1"
    argv = [a for a in sys.argv[1:] if a != "--debug"]  # accepted anywhere, not only before the command
    with interrupts.trap():  # SIGTERM unwinds like Ctrl-C: staging removed, report written
        try:
            code = app(args=argv, standalone_mode=False)
            if code == 130:  # Typer turns any KeyboardInterrupt into Exit(130) before we see it
                raise interrupts.Interrupted(interrupts.received() or signal.SIGINT)
        except typer.Exit as exc:
            sys.exit(exc.exit_code)
        except SystemExit:
            raise
        except BaseException as exc:
            if isinstance(exc, typer.Abort):  # Typer wraps EOFError in Abort; a bare one is a Ctrl-C'd prompt
                exc = exc.__cause__ or KeyboardInterrupt()
            if isinstance(exc, Exception) and hasattr(exc, "show") and hasattr(exc, "exit_code"):
                exc.show()  # a usage error from Typer's Click
                sys.exit(exc.exit_code)
            sys.exit(_print_error(exc, debug))
        sys.exit(code if isinstance(code, int) else 0)


def _print_error(exc: BaseException, debug: bool) -> int:
    from optcli.outcome import classify

    outcome = classify(exc)
    if debug:
        console.print_exception()
    if outcome.kind == "interrupted":
        console.print(f"[yellow]{escape(outcome.message)}[/]: no partial artifact was left in place")
        return outcome.exit_code
    label = "internal error" if outcome.kind == "internal" else "error"
    console.print(f"[red]{label}:[/] {escape(outcome.message)}")
    if outcome.hint:
        console.print(f"[dim]hint:[/] {escape(outcome.hint)}")
    return outcome.exit_code
