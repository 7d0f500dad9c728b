"""Seeded random data from the input spec: proves the plumbing, says nothing about accuracy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
from pydantic import Field

from optcli.calibration.base import Batch, DataSourceKind, SourceContext
from optcli.specs import NUMPY_DTYPES, ShapeResolver
from optcli.strict import StrictModel


class SyntheticSource(StrictModel):
    type: Literal["synthetic"] = "synthetic"
    seed: int = Field(0, description="Random seed. Use different seeds for calibration and validation.")
    distribution: Literal["normal", "uniform"] = Field(
        "normal", description="Float inputs: N(0,1) or U[low, high)."
    )
    low: float = Field(0.0, description="Lower bound for uniform float inputs.")
    high: float = Field(1.0, description="Upper bound (exclusive) for uniform float inputs.")
    int_ranges: dict[str, tuple[int, int]] = Field(
        default_factory=dict,
        description="Integer inputs: [low, high) per input name, e.g. {input_ids: [1, 30522]}. "
        "Unlisted integer inputs are all ones (a valid token id, an attend-everything mask).",
    )


def generate(
    rng: np.random.Generator,
    options: SyntheticSource,
    resolver: ShapeResolver,
    sizes: dict[str, int],
) -> Batch:
    """One batch of random inputs with the given dim sizes."""
    batch: Batch = {}
    for spec in resolver.inputs:
        shape = resolver.shape(spec, sizes)
        if spec.dtype in ("float32", "float16", "bfloat16"):
            if options.distribution == "normal":
                data = rng.standard_normal(shape, dtype=np.float32)
            else:
                data = rng.uniform(options.low, options.high, shape).astype(np.float32)
            if spec.dtype == "float16":  # feed what the recipe declares (numpy has no bfloat16)
                data = data.astype(np.float16)
        elif spec.dtype == "bool":
            data = np.ones(shape, dtype=np.bool_)
        else:
            low, high = options.int_ranges.get(spec.name, (1, 2))
            data = rng.integers(low, max(high, low + 1), shape).astype(NUMPY_DTYPES[spec.dtype])
        batch[spec.name] = data
    return batch


def random_batch(resolver: ShapeResolver, sizes: dict[str, int], seed: int = 0) -> Batch:
    return generate(np.random.default_rng(seed), SyntheticSource(seed=seed), resolver, sizes)


def open_source(options: SyntheticSource, ctx: SourceContext, chunk: int = 64) -> Iterator[Batch]:
    rng = np.random.default_rng(options.seed)
    sizes = ctx.resolver.sizes(batch_size=chunk)
    while True:
        yield generate(rng, options, ctx.resolver, sizes)


SOURCE = DataSourceKind(name="synthetic", options=SyntheticSource, open=open_source, synthetic=True)
