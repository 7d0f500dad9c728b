"""`optcli sweep`: the command body (registered in cli.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from optcli.console import console
from optcli.errors import UserInputError

ExecutorOption = Annotated[
    str | None,
    typer.Option(
        "--executor", help="local (a process pool here) or ray. Default: the sweep file's `executor`."
    ),
]


def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML file.", show_default=False)],
    executor: ExecutorOption = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="Ray cluster: auto, ray://head:10001, host:6379 (implies --executor ray)."
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", "-j", min=1, help="Cells at once (overrides `concurrency`).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Skip cells whose last run passed with the same key.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run only the cells matching '<model>/<variant>' (fnmatch), repeatable."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Sweep folder (overrides `output`).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the cells, their keys and commands; run nothing.")
    ] = False,
) -> None:
    """Run many recipes times a matrix of --set overrides, each cell an ordinary `optcli run`.

    Cells run on a local process pool or a Ray cluster, each with its own run folder;
    sweep.json, sweep.md and sweep.junit.xml are written after every cell.

    Exit code: the worst cell's. 0 pass, 1 a gate failed, 2 bad input,
    3 missing backend/device, 4 internal error,
    5 a cell's worker or node died on every attempt.
    130 on Ctrl-C: running cells are cancelled, the partial sweep is written.
    """
    from optcli.runlock import RunLock
    from optcli.sweep import cells as cells_mod
    from optcli.sweep import matrix, runner
    from optcli.sweep.results import CellRecord, SweepState
    from optcli.sweep.spec import load_sweep

    spec, base_dir = load_sweep(sweep_file)
    kind = "ray" if ray_address else (executor or spec.executor)
    if kind not in ("local", "ray"):
        raise UserInputError(f"--executor: expected 'local' or 'ray', got {kind!r}")
    out_dir = out or (base_dir / spec.output if spec.output else Path("runs") / f"sweep-{spec.name}")
    out_dir = Path(os.path.abspath(out_dir))  # '..' folded, symlinks kept
    cells = cells_mod.expand(spec, base_dir, out_dir, only, file=str(sweep_file))
    if not cells:
        raise UserInputError(
            f"no cell of {sweep_file} matches --only {only}" if only else "the sweep has no cell"
        )
    cells_mod.assign_keys(cells)
    if dry_run:
        for cell in cells:
            key = cell.key or f"(does not load: {cell.problem})"
            console.print(f"{escape(cell.id)}  key {escape(key)}  -> {cell.out_dir}")
            console.print("  " + escape(" ".join(cell.argv()[3:])), soft_wrap=True)
        return
    concurrency = workers or spec.concurrency
    out_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(out_dir).held():  # one sweep at a time per sweep folder
        state = SweepState(spec.name, str(sweep_file), out_dir, kind, [CellRecord(c) for c in cells])
        todo = runner.prepare(state, resume)
        if resume:
            console.print(f"--resume: {len(cells) - len(todo)} of {len(cells)} cell(s) need no run")
        pool = _executor(kind, concurrency, ray_address, spec, base_dir) if todo else None
        try:
            runner.run(state, pool or _Idle(), todo, retries=spec.retries, cwd=Path.cwd(), say=_say)
        except KeyboardInterrupt:
            matrix.render(state.records, console, f"sweep {spec.name} (interrupted)")
            from optcli import interrupts

            console.print(
                f"[yellow]interrupted[/]: partial sweep in {out_dir / 'sweep.json'} (--resume continues)"
            )
            raise typer.Exit(interrupts.exit_code_for(interrupts.received())) from None
        finally:
            if pool is not None:
                pool.close()
    matrix.render(state.records, console, f"sweep {spec.name}")
    console.print(f"exit {state.exit_code}  sweep: {out_dir / 'sweep.json'}")
    raise typer.Exit(state.exit_code or 0)


def _say(text: str) -> None:
    console.print(escape(text), soft_wrap=True)


def _executor(kind: str, concurrency: int | None, address: str | None, spec, base_dir: Path):
    if kind == "local":
        from optcli.sweep.executors.local import LocalExecutor

        return LocalExecutor(concurrency or os.cpu_count() or 1)
    from optcli.sweep.executors.ray_executor import RayExecutor

    working_dir = (base_dir / spec.ray.working_dir).resolve() if spec.ray.working_dir else None
    return RayExecutor(
        address or spec.ray.address,
        concurrency,
        shared_output=spec.ray.shared_output,
        working_dir=working_dir,
    )


class _Idle:
    """The executor when every cell is settled without a run (all resumed)."""

    capacity = 0

    def running(self) -> int:
        return 0

    def cancel(self, grace_s: float) -> list:
        return []
