"""The sweep driver: keeps up to `capacity` cells running, retries a cell whose worker died, records
every result as it arrives, and on Ctrl-C cancels the running cells and writes the partial sweep."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from optcli import interrupts
from optcli.sweep.cells import Cell
from optcli.sweep.executors.base import Attempt, CellTask, Executor
from optcli.sweep.results import INFRA_EXIT, CellRecord, SweepState, passed_before, write_cell_file

CANCEL_GRACE_S = 30.0  # a cancelled run writes its interrupted report.json; then it is killed


def task_for(cell: Cell, cwd: Path) -> CellTask:
    env = {k: v for k, v in os.environ.items() if k.startswith("OPTCLI_") and k != "OPTCLI_SWEEP_PARENT"}
    resources = cell.resources.model_dump(mode="json")
    return CellTask(cell.id, cell.argv(), str(cell.out_dir), str(cwd), env, resources)


def prepare(state: SweepState, resume: bool) -> list[CellRecord]:
    """Settle the cells that need no run (a recipe that does not load; with --resume, cells that passed
    with the same key) and return the others."""
    todo = []
    for record in state.records:
        cell = record.cell
        if cell.problem is not None:
            record.status, record.exit_code, record.message = (
                "finished",
                cell.problem.exit_code,
                str(cell.problem),
            )
            write_cell_file(record)
        elif resume and (report := passed_before(cell)) is not None:
            record.status, record.exit_code, record.report = "resumed", 0, report
        else:
            todo.append(record)
    return todo


def run(
    state: SweepState,
    executor: Executor,
    todo: list[CellRecord],
    *,
    retries: int,
    cwd: Path,
    say: Callable[[str], None],
) -> None:
    pending = deque(todo)
    by_id = {r.cell.id: r for r in state.records}
    started: dict[str, float] = {}  # when the driver handed each running cell to the executor
    state.write()
    try:
        while pending or executor.running():
            while pending and executor.running() < executor.capacity:
                record = pending.popleft()
                task = task_for(record.cell, cwd)
                problem = executor.check(task)
                if problem is not None:  # e.g. no node offers the resource: a missing device
                    record.status, record.exit_code, record.message = "finished", 3, problem
                    _settled(state, record, say)
                    continue
                executor.start(task)
                record.status, started[record.cell.id] = "running", time.monotonic()
                state.write()
            for cell_id, attempt in executor.poll(0.5):
                record = by_id[cell_id]
                attempt.driver_seconds = time.monotonic() - started.pop(cell_id)
                record.attempts.append(attempt)
                if attempt.infra and len(record.attempts) <= retries:
                    say(f"{cell_id}: {attempt.infra}; retrying (attempt {len(record.attempts) + 1})")
                    record.status = "pending"
                    pending.appendleft(record)
                    continue
                _finish(record, attempt)
                _settled(state, record, say)
    except KeyboardInterrupt:
        for cell_id, attempt in executor.cancel(CANCEL_GRACE_S):
            record = by_id[cell_id]
            record.attempts.append(attempt)
            _store_files(record.cell, attempt)
            record.status, record.report = "interrupted", attempt.report or record.report
        for record in pending:
            record.status = "not run"
        state.status, state.exit_code = "interrupted", interrupts.exit_code_for(interrupts.received())
        state.write()
        raise
    state.status, state.exit_code = "finished", state.worst()
    state.write()


def _finish(record: CellRecord, attempt: Attempt) -> None:
    _store_files(record.cell, attempt)
    record.report = attempt.report
    if attempt.infra:
        tries = len(record.attempts)
        record.status, record.exit_code = "error", INFRA_EXIT
        record.message = f"{attempt.infra} (gave up after {tries} attempt{'s' if tries > 1 else ''})"
        return
    record.status, record.exit_code = "finished", attempt.exit_code
    if attempt.exit_code == 1 and attempt.report:
        record.message = "failed gates: " + ", ".join(record.summary.get("failed_gates") or [])
    elif attempt.exit_code:
        error = (attempt.report or {}).get("error") or {}
        lines = [line for line in attempt.log_tail.strip().splitlines() if line.strip()]
        record.message = error.get("message") or (lines[-1] if lines else f"exit {attempt.exit_code}")


def _settled(state: SweepState, record: CellRecord, say: Callable[[str], None]) -> None:
    write_cell_file(record)
    state.write()
    say(f"{record.cell.id}: {record.text}")


def _store_files(cell: Cell, attempt: Attempt) -> None:
    """Report files a worker sent back (its run folder was not on a shared path)."""
    for name, data in attempt.files.items():
        path = cell.out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
