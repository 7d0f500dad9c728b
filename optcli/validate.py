"""Validation stage: baseline and every engine on the same held-out batches, metrics per output."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from optcli.backends import Engine
from optcli.calibration import Batch
from optcli.errors import UserInputError
from optcli.gates import settled_failure
from optcli.metrics import ClassAccumulator, OutputAccumulator, non_finite_problem, summarize
from optcli.ranking import RankingSet


@dataclass
class EngineValidation:
    engine: str
    precision: str
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    classification: dict[str, float] = field(default_factory=dict)
    # Set when validation stopped running this engine early: {"gate", "after_samples"}; its metrics
    # then cover those first samples only.
    stopped_early: dict[str, Any] | None = None
    # Set when a target run left this engine unvalidated (fastest_first.Pruned as a dict): it has no
    # metrics, and no gates.
    pruned: dict[str, Any] | None = None

    def metric(self, name: str) -> float | None:
        if name in self.summary:
            return self.summary[name]
        return self.classification.get(name)

    @property
    def problem(self) -> str | None:
        """Why every fidelity gate of this engine fails whatever its threshold (NaN/Inf outputs)."""
        return non_finite_problem(self.summary)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "engine": self.engine,
            "precision": self.precision,
            "metrics": {**self.summary, **self.classification},
            "outputs": self.outputs,
        }
        if self.stopped_early:
            data["stopped_early"] = self.stopped_early
        if self.pruned:
            data["pruned"] = self.pruned
        return data


class RecordingBaseline:
    """The baseline engine, keeping the batches it ran and its outputs (while they fit in
    `cap_bytes`), so that another pass over the same samples replays them instead of running it.
    A later pass gets the very batch objects it recorded, so a source that yields different data
    each time cannot pair one sample's reference with another's."""

    def __init__(self, engine: Engine, cap_bytes: int) -> None:
        self.engine = engine
        self.label = engine.label
        self.cap_bytes = cap_bytes
        self.batches: list[Batch] = []
        self.complete = True  # every batch so far is recorded
        self._outputs: dict[int, list[Any]] = {}
        self._bytes = 0

    def run(self, batch: Batch) -> list[Any]:
        if id(batch) in self._outputs:
            return self._outputs[id(batch)]
        outputs = self.engine.run(batch)
        size = sum(v.nbytes for v in batch.values() if hasattr(v, "nbytes")) + sum(o.nbytes for o in outputs)
        if self.complete and self._bytes + size <= self.cap_bytes:
            self.batches.append(batch)
            self._outputs[id(batch)] = outputs
            self._bytes += size
        else:
            self.complete = False
        return outputs


def validate_engines(
    baseline: Engine | RecordingBaseline,
    candidates: list[Engine],
    batches: Iterable[Batch],
    *,
    output_names: list[str],
    labels_key: str,
    class_output: int | None,
    on_batch: Any = None,
    data_field: str = "validate.data",
    stop_gates: list[dict[str, str]] | None = None,
) -> tuple[list[EngineValidation], dict[str, Any]]:
    """Stream batches once through all engines; returns per-engine results and baseline stats.

    `stop_gates` (one dict per candidate, from gates.settling_gates): a candidate stops running once
    one of its gates can no longer pass (its result says after how many samples); the others, and
    the baseline, see every batch. Zero samples is an error, never a verdict: with nothing compared
    every metric would be vacuous."""
    outputs = {c.label: [OutputAccumulator() for _ in output_names] for c in candidates}
    classes = {c.label: ClassAccumulator() for c in candidates}
    baseline_classes = ClassAccumulator()
    ranking = RankingSet([c.label for c in candidates], class_output)  # CTR outputs with 0/1 labels
    samples = 0
    stops = {} if stop_gates is None else dict(zip((c.label for c in candidates), stop_gates))
    stopped: dict[str, dict[str, Any]] = {}
    for batch in batches:
        labels = batch.get(labels_key)
        reference = baseline.run(batch)
        ranking.add_baseline(reference, labels)
        if class_output is not None and _is_class_scores(reference, class_output):
            baseline_classes.update(reference[class_output], reference[class_output], labels)
        for engine in candidates:
            if engine.label in stopped:
                continue
            result = engine.run(batch)
            ranking.add(engine.label, result, labels)
            for acc, ref, cand in zip(outputs[engine.label], reference, result):
                acc.update(ref, cand)
            if class_output is not None and _is_class_scores(reference, class_output):
                classes[engine.label].update(reference[class_output], result[class_output], labels)
        samples += len(reference[0])
        for label, gates in stops.items():
            if label not in stopped:
                running = summarize({str(i): acc.result() for i, acc in enumerate(outputs[label])})
                if (gate := settled_failure(running, gates)) is not None:
                    stopped[label] = {"gate": gate, "after_samples": samples}
        if on_batch:
            on_batch(len(reference[0]))
    if samples == 0:
        raise UserInputError(
            f"{data_field}: the source yielded no samples, so there is nothing to validate on; point it "
            "at data (files, a callable that yields batches) or set validate.enabled: false"
        )
    results = []
    for engine in candidates:
        per_output = {name: acc.result() for name, acc in zip(output_names, outputs[engine.label])}
        results.append(
            EngineValidation(
                engine=engine.label,
                precision=engine.precision,
                outputs=per_output,
                summary=summarize(per_output),
                classification={
                    **(classes[engine.label].result() if classes[engine.label].samples else {}),
                    **ranking.metrics(engine.label),
                },
                stopped_early=stopped.get(engine.label),
            )
        )
    baseline_stats: dict[str, Any] = {"engine": baseline.label, "samples": samples}
    if baseline_classes.labelled:
        baseline_stats["accuracy"] = baseline_classes.result()["accuracy"]
    baseline_stats.update(ranking.baseline_metrics())
    return results, baseline_stats


def split_samples(batches: Iterable[Batch], count: int) -> tuple[list[Batch], Iterator[Batch]]:
    """The first `count` samples as a list of batches, and an iterator over the rest of the stream
    (the batch that straddles the boundary is cut in two)."""
    stream = iter(batches)
    head: list[Batch] = []
    taken = 0
    remainder: Batch | None = None
    while taken < count:
        batch = next(stream, None)
        if batch is None:
            break
        size = len(next(iter(batch.values())))
        keep = min(size, count - taken)
        head.append({k: v[:keep] for k, v in batch.items()} if keep < size else batch)
        if keep < size:
            remainder = {k: v[keep:] for k, v in batch.items()}
        taken += keep

    def rest() -> Iterator[Batch]:
        if remainder is not None:
            yield remainder
        yield from stream

    return head, rest()


def _is_class_scores(outputs: list[Any], index: int) -> bool:
    """Class scores look like [N, classes] with more than one class."""
    return index < len(outputs) and outputs[index].ndim == 2 and outputs[index].shape[1] > 1
