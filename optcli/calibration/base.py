"""Data sources yield batches (input name -> array, leading batch axis); checked and re-batched here."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optcli.errors import OptcliError, UserInputError
from optcli.optional import OptionalPackage
from optcli.specs import NUMPY_DTYPES, InputSpec, ShapeResolver
from optcli.strict import StrictModel
from optcli.userimport import describe_exception

Batch = dict[str, np.ndarray]


@dataclass
class SourceContext:
    """What a source needs: the declared inputs, where relative paths start, the label key."""

    resolver: ShapeResolver
    base_dir: Path
    field: str  # dotted recipe field, for error messages
    labels_key: str | None = None
    warn: Callable[[str], None] | None = None  # where data problems short of an error are reported


@dataclass(frozen=True)
class DataSourceKind:
    """A registered data source: its options model (recipe entry) and a function that opens it."""

    name: str
    options: type[StrictModel]
    open: Callable[[StrictModel, SourceContext], Iterable[Batch]]
    synthetic: bool = False
    # Exceptions that, raised while the source is read, mean the user's data or code is at fault (exit 2).
    user_errors: tuple[type[Exception], ...] = ()
    # Optional packages the source needs (what `optcli doctor` checks).
    requires: tuple[OptionalPackage, ...] = ()
    # The files it reads that optcli can name (for data fingerprints); None: it reads none.
    files: Callable[[StrictModel, SourceContext], list[Path]] | None = None


def source_label(options: StrictModel) -> str:
    """'files source 'data/*.npz'', 'callable source 'data.py:batches'': what the messages call a source."""
    ref = getattr(options, "path", None) or getattr(options, "callable", None)
    kind = getattr(options, "type", "data")
    return f"the {kind} source '{ref}'" if ref else f"the {kind} source"


def read_source(kind: DataSourceKind, options: StrictModel, ctx: SourceContext) -> Iterator[Batch]:
    """Open and iterate a source: a failure of the user's files or code becomes one UserInputError
    naming the recipe field, so a broken data set is exit 2, never an internal error."""
    try:
        yield from kind.open(options, ctx)
    except OptcliError:
        raise
    except kind.user_errors as exc:
        raise UserInputError(
            f"{ctx.field}: reading {source_label(options)} failed: {describe_exception(exc, ctx.base_dir)}"
        ) from exc


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
            array = _as_array(batch[spec.name], f"{ctx.field} (batch {index}): input '{spec.name}'")
            problem = ctx.resolver.check_array(spec, array, f"{ctx.field} (batch {index})")
            if problem:
                raise UserInputError(problem)
            out[spec.name] = _cast(array, spec)
            sizes.add(array.shape[0])
        if ctx.labels_key and ctx.labels_key in batch:
            where = f"{ctx.field} (batch {index}): labels '{ctx.labels_key}'"
            labels = _as_array(batch[ctx.labels_key], where)
            if labels.ndim == 0:
                raise UserInputError(f"{where} is a scalar, expected one label per sample (a batch axis)")
            out[ctx.labels_key] = labels
            sizes.add(labels.shape[0])
        if len(sizes) != 1:
            raise UserInputError(f"{ctx.field}: batch {index} mixes leading sizes {sorted(sizes)}")
        yield out


def _as_array(value: object, where: str) -> np.ndarray:
    """The value as a numpy array; ragged lists or a CUDA tensor are the data's fault, not a crash."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise UserInputError(
            f"{where} is a {type(value).__name__} that is not an array: {describe_exception(exc)}",
            hint="yield numpy arrays (or CPU tensors) of one shape per batch",
        ) from exc


def _cast(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    if spec.dtype == "bfloat16":
        return array.astype(np.float32)
    return np.ascontiguousarray(array, dtype=NUMPY_DTYPES[spec.dtype])


def rebatch(batches: Iterable[Batch], batch_size: int, limit: int | None) -> Iterator[Batch]:
    """Regroup a stream into batches of `batch_size` samples, stopping after `limit` samples.

    Holds at most one output batch plus one input batch in memory, so memory does not grow
    with the number of samples.
    """
    if limit is not None and limit <= 0:
        return
    pending: list[Batch] = []
    pending_count = 0
    emitted = 0
    for batch in batches:
        n = len(next(iter(batch.values())))
        if limit is not None:
            n = min(n, limit - emitted - pending_count)
            batch = {k: v[:n] for k, v in batch.items()}
        if n <= 0:
            continue  # an empty file in a glob: the next one may hold samples
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


def require_samples(batches: Iterable[Batch], ctx: SourceContext, options: StrictModel) -> Iterator[Batch]:
    """Pass batches through; refuse a source that yields no sample, or a sample whose input is all NaN/Inf.

    An empty source would otherwise reach a quantizer or a metric with nothing to work on (an
    internal error, or a comparison of nothing that passes), and an all-NaN sample gives NaN
    ranges or metrics. Some non-finite values in a sample are reported once through `ctx.warn`.
    """
    samples = 0
    warned = False
    for batch in batches:
        size = len(next(iter(batch.values())))
        for spec in ctx.resolver.inputs:
            array = batch[spec.name]
            if array.dtype.kind != "f" or not array.size:
                continue
            finite = np.isfinite(array).reshape(size, -1)
            per_sample = finite.sum(axis=1)
            dead = np.flatnonzero(per_sample == 0)
            if dead.size:
                first = samples + int(dead[0])
                raise UserInputError(
                    f"{ctx.field}: input '{spec.name}' is entirely NaN/Inf in sample {first} of "
                    f"{source_label(options)} ({dead.size} such samples among samples {samples}-"
                    f"{samples + size - 1}): such data cannot calibrate or validate anything",
                    hint="check how the arrays were made (a failed normalization, an uninitialized buffer)",
                )
            bad = finite.size - int(per_sample.sum())
            if bad and ctx.warn is not None and not warned:
                ctx.warn(
                    f"{ctx.field}: input '{spec.name}' has {bad} NaN/Inf of {finite.size} values in "
                    f"samples {samples}-{samples + size - 1}"
                )
                warned = True
        samples += size
        yield batch
    if samples == 0:
        raise UserInputError(
            f"{ctx.field}: {source_label(options)} yielded no samples (no batch, or only batches with "
            "0 rows along the batch axis)",
            hint="point the source at data that holds at least one sample",
        )


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
