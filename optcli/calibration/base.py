"""Data sources yield batches (input name -> array, leading batch axis); checked and re-batched here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optcli.errors import UserInputError
from optcli.specs import NUMPY_DTYPES, InputSpec, ShapeResolver
from optcli.strict import StrictModel

Batch = dict[str, np.ndarray]


@dataclass
class SourceContext:
    """What a source needs: the declared inputs, where relative paths start, the label key."""

    resolver: ShapeResolver
    base_dir: Path
    field: str  # dotted recipe field, for error messages
    labels_key: str | None = None


@dataclass(frozen=True)
class DataSourceKind:
    """A registered data source: its options model (recipe entry) and a function that opens it."""

    name: str
    options: type[StrictModel]
    open: Callable[[StrictModel, SourceContext], Iterable[Batch]]
    synthetic: bool = False


def checked_batches(raw: Iterable[Batch], ctx: SourceContext) -> Iterator[Batch]:
    """Validate each raw batch against the input spec and convert dtypes; keep labels if present."""
    inputs = ctx.resolver.inputs
    for index, batch in enumerate(raw):
        if not isinstance(batch, dict):
            raise UserInputError(
                f"{ctx.field}: batch {index} is a {type(batch).__name__}, expected a dict of "
                f"input name -> array with keys {[s.name for s in inputs]}"
            )
        missing = [s.name for s in inputs if s.name not in batch]
        if missing:
            raise UserInputError(
                f"{ctx.field}: batch {index} has keys {sorted(batch)}, missing input(s) {missing}"
            )
        out: Batch = {}
        sizes = set()
        for spec in inputs:
            array = np.asarray(batch[spec.name])
            problem = ctx.resolver.check_array(spec, array, f"{ctx.field} (batch {index})")
            if problem:
                raise UserInputError(problem)
            out[spec.name] = _cast(array, spec)
            sizes.add(array.shape[0])
        if ctx.labels_key and ctx.labels_key in batch:
            out[ctx.labels_key] = np.asarray(batch[ctx.labels_key])
            sizes.add(out[ctx.labels_key].shape[0])
        if len(sizes) != 1:
            raise UserInputError(f"{ctx.field}: batch {index} mixes leading sizes {sorted(sizes)}")
        yield out


def _cast(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    if spec.dtype == "bfloat16":
        return array.astype(np.float32)
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[spec.dtype])


def rebatch(batches: Iterable[Batch], batch_size: int, limit: int | None) -> Iterator[Batch]:
    """Regroup a stream into batches of `batch_size` samples, stopping after `limit` samples.

    Holds at most one output batch plus one input batch in memory, so memory does not grow
    with the number of samples.
    """
    pending: list[Batch] = []
    pending_count = 0
    emitted = 0
    for batch in batches:
        n = len(next(iter(batch.values())))
        if limit is not None:
            n = min(n, limit - emitted - pending_count)
            batch = {k: v[:n] for k, v in batch.items()}
        if n <= 0:
            break
        pending.append(batch)
        pending_count += n
        while pending_count >= batch_size:
            merged = _concat(pending)
            yield {k: v[:batch_size] for k, v in merged.items()}
            emitted += batch_size
            rest = {k: v[batch_size:] for k, v in merged.items()}
            pending_count -= batch_size
            pending = [rest] if pending_count else []
        if limit is not None and emitted + pending_count >= limit:
            break
    if pending_count:
        yield _concat(pending)


def _concat(batches: list[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    try:
        return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    except ValueError as exc:
        shapes = {k: sorted({tuple(b[k].shape[1:]) for b in batches}) for k in batches[0]}
        raise UserInputError(
            f"data batches cannot be joined into batch_size batches: per-sample shapes differ {shapes}",
            hint="pad to one length in the data source, or set batch_size to the source's (e.g. 1)",
        ) from exc


def sample_digests(batch: Batch, input_names: list[str]) -> list[bytes]:
    """One short hash per sample, to detect calibration samples reused for validation."""
    n = len(batch[input_names[0]])
    digests = []
    for i in range(n):
        h = hashlib.blake2b(digest_size=12)
        for name in input_names:
            h.update(np.ascontiguousarray(batch[name][i]).tobytes())
        digests.append(h.digest())
    return digests
