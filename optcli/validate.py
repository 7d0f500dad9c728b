"""Validation stage: baseline and every engine on the same held-out batches, metrics per output."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from optcli.backends import Engine
from optcli.calibration import Batch
from optcli.metrics import ClassAccumulator, OutputAccumulator, summarize


@dataclass
class EngineValidation:
    engine: str
    precision: str
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    classification: dict[str, float] = field(default_factory=dict)

    def metric(self, name: str) -> float | None:
        if name in self.summary:
            return self.summary[name]
        return self.classification.get(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "precision": self.precision,
            "metrics": {**self.summary, **self.classification},
            "outputs": self.outputs,
        }


def validate_engines(
    baseline: Engine,
    candidates: list[Engine],
    batches: Iterable[Batch],
    *,
    output_names: list[str],
    labels_key: str,
    class_output: int | None,
    on_batch: Any = None,
) -> tuple[list[EngineValidation], dict[str, Any]]:
    """Stream batches once through all engines; returns per-engine results and baseline stats."""
    outputs = {c.label: [OutputAccumulator() for _ in output_names] for c in candidates}
    classes = {c.label: ClassAccumulator() for c in candidates}
    baseline_classes = ClassAccumulator()
    samples = 0
    for batch in batches:
        labels = batch.get(labels_key)
        reference = baseline.run(batch)
        if class_output is not None and _is_class_scores(reference, class_output):
            baseline_classes.update(reference[class_output], reference[class_output], labels)
        for engine in candidates:
            result = engine.run(batch)
            for acc, ref, cand in zip(outputs[engine.label], reference, result):
                acc.update(ref, cand)
            if class_output is not None and _is_class_scores(reference, class_output):
                classes[engine.label].update(reference[class_output], result[class_output], labels)
        samples += len(reference[0])
        if on_batch:
            on_batch(len(reference[0]))
    results = []
    for engine in candidates:
        per_output = {name: acc.result() for name, acc in zip(output_names, outputs[engine.label])}
        results.append(
            EngineValidation(
                engine=engine.label,
                precision=engine.precision,
                outputs=per_output,
                summary=summarize(per_output),
                classification=classes[engine.label].result() if classes[engine.label].samples else {},
            )
        )
    baseline_stats: dict[str, Any] = {"engine": baseline.label, "samples": samples}
    if baseline_classes.labelled:
        baseline_stats["accuracy"] = baseline_classes.result()["accuracy"]
    return results, baseline_stats


def _is_class_scores(outputs: list[Any], index: int) -> bool:
    """Class scores look like [N, classes] with more than one class."""
    return index < len(outputs) and outputs[index].ndim == 2 and outputs[index].shape[1] > 1
