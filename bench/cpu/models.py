"""The models the suite runs: recipe, overrides, and how many held-out samples it checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass(frozen=True)
class ModelSpec:
    name: str
    recipe: str
    overrides: tuple[str, ...] = ()
    classifier: bool = True
    accuracy_samples: int = 64  # held-out samples for the suite's own accuracy columns


# The suite's gate for every model and tool: the worst held-out sample's output cosine vs eager
# FP32 (the recipes' own gates are global cosine and, for the classifiers, top-1 agreement).
WORST_SAMPLE_GATE = 'validate.gates={cosine_min: ">= 0.99"}'

MODELS = {
    spec.name: spec
    for spec in (
        # resnet50.yaml has no target: the suite asks for it (the recipe's engines compete too).
        ModelSpec("resnet50", "recipes/resnet50.yaml", ("target=cpu", WORST_SAMPLE_GATE)),
        ModelSpec("mobilenetv3", "recipes/mobilenetv3.yaml", (WORST_SAMPLE_GATE,)),
        ModelSpec("vit-b16", "recipes/vit-b16.yaml", (WORST_SAMPLE_GATE,), accuracy_samples=32),
        ModelSpec(
            "minilm", "recipes/minilm.yaml", (WORST_SAMPLE_GATE,), classifier=False, accuracy_samples=100
        ),
    )
}

SMOKE_OVERRIDES = (
    "quantization.calibration.samples=8",
    "validate.samples=8",
    "benchmark.iterations=3",
    "benchmark.warmup=1",
)
