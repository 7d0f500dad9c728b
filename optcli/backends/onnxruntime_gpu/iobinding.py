"""IO binding: inputs copied to the device once, outputs left there, so timed runs measure the model.

Device-independent on purpose: the engine binds to "cuda"; tests run the same calls against the real
onnxruntime-gpu wheel with "cpu" on a machine without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Bound:
    binding: Any
    values: list[Any]  # keeps the device copies alive while bound


def bind(
    session: Any,
    feeds: dict[str, np.ndarray],
    output_names: list[str],
    device_type: str,
    device_id: int,
) -> Bound:
    """Copy `feeds` (the model's inputs, in its order) to the device and bind every output there."""
    import onnxruntime as ort

    binding = session.io_binding()
    values = [ort.OrtValue.ortvalue_from_numpy(array, device_type, device_id) for array in feeds.values()]
    for name, value in zip(feeds, values):
        binding.bind_ortvalue_input(name, value)
    for name in output_names:
        binding.bind_output(name, device_type, device_id)
    return Bound(binding, values)


def run(session: Any, bound: Bound) -> None:
    # Run waits for the provider's stream unless the run option disable_synchronize_execution_providers
    # is "1", so a returned run is finished: synchronize() has nothing left to wait for.
    session.run_with_iobinding(bound.binding)


def outputs(bound: Bound) -> list[np.ndarray]:
    """The bound outputs of the last run, copied to host memory."""
    return list(bound.binding.copy_outputs_to_cpu())
