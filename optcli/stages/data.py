"""The run's inputs: each recipe data source opened once, shared by every stage that reads it, with
a fingerprint that cache keys use (a changed file or folder is a different stream); and the
PyTorch model, loaded only when a stage needs it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optcli.cache import sha256_file
from optcli.calibration import Batch, SourceContext, is_synthetic, sample_digests, source_files, stream
from optcli.errors import UserInputError
from optcli.specs import ShapeResolver
from optcli.stages.context import StageContext

# Files up to this size are hashed by content; larger ones (and image folders with many files) by
# name, size and mtime, which costs nothing and still notices an edited or replaced file.
CONTENT_DIGEST_LIMIT = 64 << 20


@dataclass
class DataStream:
    """One recipe data source with the batch size and sample count it is read with."""

    options: object  # the recipe's DataSource entry
    context: SourceContext
    batch_size: int
    samples: int | None
    input_names: list[str]
    digests: set[bytes] = field(default_factory=set)  # of every sample read so far
    _fingerprint: str | None = None

    @property
    def field(self) -> str:
        return self.context.field

    @property
    def synthetic(self) -> bool:
        return is_synthetic(self.options)

    def batches(
        self, *, samples: int | None = None, on_batch: Callable[[int], None] | None = None
    ) -> Iterator[Batch]:
        """A fresh pass over the source (`samples` overrides the recipe's count), recording digests."""
        count = self.samples if samples is None else samples
        for batch in stream(self.options, self.context, batch_size=self.batch_size, samples=count):
            self.digests.update(sample_digests(batch, self.input_names))
            if on_batch is not None:
                on_batch(len(batch[self.input_names[0]]))
            yield batch

    def fingerprint(self) -> str:
        """Source settings, the input specs batches are checked against, and every file it reads."""
        if self._fingerprint is None:
            parts = [
                json.dumps(self.options.model_dump(mode="json"), sort_keys=True),
                json.dumps([spec.model_dump(mode="json") for spec in self.context.resolver.inputs]),
                str(self.batch_size),
                str(self.samples),
                self.context.labels_key or "",
            ]
            parts += [_file_part(path) for path in source_files(self.options, self.context)]
            self._fingerprint = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
        return self._fingerprint


def _file_part(path: Path) -> str:
    stat = path.stat()
    if stat.st_size <= CONTENT_DIGEST_LIMIT:
        return f"{path.resolve()}:{sha256_file(path)}"
    return f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


@dataclass
class RunData:
    calibration: DataStream | None
    validation: DataStream


def open_data(recipe, resolver: ShapeResolver, warn: Callable[[str], None]) -> RunData:
    """The recipe's calibration and validation sources, each opened once for the whole run."""
    names = [spec.name for spec in recipe.model.inputs]
    calibration = None
    quantization = recipe.quantization
    if quantization is not None:
        settings = quantization.calibration
        ctx = SourceContext(resolver, recipe.base_dir, "quantization.calibration.data", warn=warn)
        calibration = DataStream(settings.data, ctx, settings.batch_size, settings.samples, names)
    settings = recipe.validate_  # read by validation and, for tuning, by accuracy recovery
    ctx = SourceContext(resolver, recipe.base_dir, "validate.data", labels_key=settings.labels)
    validation = DataStream(settings.data, ctx, settings.batch_size, settings.samples, names)
    return RunData(calibration, validation)


class LazyModel:
    """The PyTorch model, loaded on first use: a rerun whose export and validation are cached never
    builds it (for large models that is most of a warm rerun's time)."""

    def __init__(self, ctx: StageContext, settings, base_dir: Path) -> None:
        self._ctx, self._settings, self._base_dir = ctx, settings, base_dir
        self._model: Any = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def get(self) -> Any:
        if self._model is None:
            from optcli.loading import load_torch_model

            previous = self._ctx.current_stage
            with self._ctx.stage("load") as record:
                self._model = load_torch_model(self._settings, self._base_dir)
                params = sum(p.numel() for p in self._model.parameters())
                record.details = {"source": self._settings.source, "parameters": params}
            self._ctx.current_stage = previous
        return self._model


def too_few_samples(available: int, tuning: int, judged: int) -> UserInputError:
    return UserInputError(
        f"validate.data: yields {available} samples, but {tuning + judged} are needed: accuracy recovery "
        f"tunes on the first {tuning} (quantization.accuracy.samples) and validation judges on the "
        f"{judged} after them (validate.samples), so that the verdict is not given on the samples "
        "recovery tuned on. Add validation data or lower one of the two."
    )
