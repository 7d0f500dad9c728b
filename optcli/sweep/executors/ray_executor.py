"""The Ray executor: each cell is a Ray task with the cell's resources, whose worker runs the cell's
`optcli run` process. Ray's own task retries are off: the driver retries a cell whose worker or node
died (a new worker process; a dead node's cells go elsewhere) and records every attempt."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from optcli.errors import MissingDependencyError, require
from optcli.sweep.executors import process
from optcli.sweep.executors.base import Attempt, CellTask, Executor

# Exceptions meaning the worker, its node or the object store failed, not the cell.
_INFRA_ERRORS = (
    "WorkerCrashedError",
    "NodeDiedError",
    "ActorDiedError",
    "ActorUnavailableError",
    "OwnerDiedError",
    "ObjectLostError",
    "ObjectFetchTimedOutError",
    "LocalRayletDiedError",
    "OutOfMemoryError",
    "RaySystemError",
    "RayTaskError",  # the task could not start the cell (e.g. no Python or disk on that node)
)
FILE_LIMIT = 1 << 20  # run-folder files a worker sends back; ONNX models and packages stay behind
_ARTIFACT_SUFFIXES = (".onnx", ".data", ".pt2", ".plan", ".engine", ".bin", ".xml")


def _run_cell(task: CellTask, shared: bool, grace_s: float) -> Attempt:
    """The Ray task body, on the worker."""
    import ray

    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", task.cell_id)
    out = Path(task.out_dir) if shared else Path(tempfile.mkdtemp(prefix=f"optcli-cell-{safe}-"))
    started = time.monotonic()
    # This node's Python (the driver's path may not exist here) and, with working_dir, its cwd.
    local = replace(task, argv=[sys.executable, *task.argv[1:]], cwd=task.cwd or os.getcwd())
    proc = process.start(local, out)
    cancelled = False
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # ray.cancel(): stop the run so it writes its interrupted report
        cancelled = True
        code = process.stop(proc, grace_s)
    attempt = process.finish(code, out, started, cancelled, os.getpid())
    attempt.node = ray.get_runtime_context().get_node_id()
    if not shared:
        attempt.files = _small_files(out)
        shutil.rmtree(out, ignore_errors=True)
    return attempt


def _small_files(root: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.name.startswith(".") or rel.name.endswith(_ARTIFACT_SUFFIXES):
            continue
        if path.stat().st_size <= FILE_LIMIT:
            files[str(rel)] = path.read_bytes()
    return files


def needs(resources: dict[str, Any]) -> dict[str, float]:
    need = {"CPU": float(resources.get("num_cpus") if resources.get("num_cpus") is not None else 1)}
    if resources.get("num_gpus"):
        need["GPU"] = float(resources["num_gpus"])
    need.update({k: float(v) for k, v in (resources.get("custom") or {}).items()})
    return {k: v for k, v in need.items() if v > 0}


class RayExecutor(Executor):
    name = "ray"

    def __init__(
        self,
        address: str | None,
        concurrency: int | None,
        *,
        shared_output: bool,
        working_dir: Path | None = None,
        grace_s: float = 30.0,
    ) -> None:
        self.ray = require("ray", extra="ray", purpose="optcli sweep --executor ray")
        options: dict[str, Any] = {"logging_level": "ERROR", "log_to_driver": False}
        if working_dir is not None:
            options["runtime_env"] = {"working_dir": str(working_dir)}
        if address is None:
            options["include_dashboard"] = False
        try:
            self.ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:  # no cluster there, or a bad address
            raise MissingDependencyError(
                f"cannot join the Ray cluster at {address or '(a new local one)'}: {exc}",
                hint="start it with `ray start --head`, or check --ray-address / ray.address",
            ) from exc
        self.shared = shared_output
        self.working_dir = working_dir
        self.grace_s = grace_s
        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        self.capacity = concurrency or max(1, cpus)
        self._remote = self.ray.remote(_run_cell)
        self._refs: dict[Any, tuple[str, CellTask]] = {}

    def check(self, task: CellTask) -> str | None:
        need = needs(task.resources)
        alive = [n for n in self.ray.nodes() if n.get("Alive")]
        if any(all(n.get("Resources", {}).get(k, 0) >= v for k, v in need.items()) for n in alive):
            return None
        return f"no node of the Ray cluster offers {need} (its {len(alive)} node(s) lack it)"

    def start(self, task: CellTask) -> None:
        resources = dict(task.resources)
        if self.working_dir is not None:  # the workers see the shipped folder as their cwd
            task = replace(task, argv=[_relative(a, self.working_dir) for a in task.argv], cwd="")
        ref = self._remote.options(
            num_cpus=resources.get("num_cpus") if resources.get("num_cpus") is not None else 1,
            num_gpus=resources.get("num_gpus") or 0,
            resources=dict(resources.get("custom") or {}),
            max_retries=0,
            retry_exceptions=False,
        ).remote(task, self.shared, self.grace_s)
        self._refs[ref] = (task.cell_id, task)

    def running(self) -> int:
        return len(self._refs)

    def poll(self, timeout: float) -> list[tuple[str, Attempt]]:
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:  # and whatever else has finished meanwhile
            ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        return [self._collect(ref, cancelled=False) for ref in ready]

    def cancel(self, grace_s: float) -> list[tuple[str, Attempt]]:
        refs = list(self._refs)
        for ref in refs:
            self.ray.cancel(ref, force=False)
        if refs:
            _, late = self.ray.wait(refs, num_returns=len(refs), timeout=grace_s + 5)
            for ref in late:
                self.ray.cancel(ref, force=True)
        return [self._collect(ref, cancelled=True) for ref in refs]

    def _collect(self, ref: Any, cancelled: bool) -> tuple[str, Attempt]:
        cell_id, task = self._refs.pop(ref)
        exceptions = self.ray.exceptions
        try:
            attempt = self.ray.get(ref, timeout=None if not cancelled else 10)
        except exceptions.TaskCancelledError:
            report = process.read_report(Path(task.out_dir)) if self.shared else None
            attempt = Attempt(exit_code=None, cancelled=True, report=report)
        except tuple(getattr(exceptions, n) for n in _INFRA_ERRORS if hasattr(exceptions, n)) as exc:
            text = str(exc).strip().splitlines()
            attempt = Attempt(exit_code=None, infra=f"{type(exc).__name__}: {text[0] if text else ''}")
            attempt.cancelled = cancelled
        except exceptions.GetTimeoutError:
            attempt = Attempt(exit_code=None, cancelled=True)
        return cell_id, attempt

    def close(self) -> None:
        if self._refs:
            self.cancel(self.grace_s)
        self.ray.shutdown()


def _relative(arg: str, root: Path) -> str:
    path = Path(arg)
    if path.is_absolute() and path.is_relative_to(root):
        return str(path.relative_to(root))
    return arg
