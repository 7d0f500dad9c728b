"""Activation statistics collected once per model and data: min, max and a signed histogram per tensor.

Memory is bounded by (tensors x bins), not by samples: each batch is folded into the running
histograms and dropped. Every range method (minmax, percentile, entropy, mse) is derived from the
same statistics, so trying another method never re-runs the model (see ranges.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NUM_BINS = 2048  # even, so bin NUM_BINS // 2 starts at zero
SAMPLES_PER_RUN = 2


@dataclass
class TensorHistogram:
    """A histogram over [-bound, bound] that doubles its bound (merging bin pairs) when data outgrows it."""

    bound: float = 0.0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BINS, dtype=np.int64))
    minimum: float = np.inf
    maximum: float = -np.inf
    non_finite: int = 0  # NaN/Inf values seen (left out of the histogram)

    def update(self, values: np.ndarray) -> None:
        values = values.ravel()
        low, high = float(values.min(initial=np.inf)), float(values.max(initial=-np.inf))
        if not (np.isfinite(low) and np.isfinite(high)):  # rare: filter only when needed
            size = values.size
            values = values[np.isfinite(values)]
            self.non_finite += size - values.size
            if values.size == 0:
                return
            low, high = float(values.min()), float(values.max())
        self.minimum, self.maximum = min(self.minimum, low), max(self.maximum, high)
        amax = max(abs(low), abs(high))
        if self.bound == 0.0:
            self.bound = amax if amax > 0 else 1e-8
        while amax > self.bound:
            self._double()
        # Uniform bins: index arithmetic + bincount is ~3x faster than np.histogram's general path.
        bins = len(self.counts)
        index = ((values + np.float32(self.bound)) * np.float32(bins / (2 * self.bound))).astype(np.intp)
        np.clip(index, 0, bins - 1, out=index)
        self.counts += np.bincount(index, minlength=bins)

    def _double(self) -> None:
        # Halve the resolution: bins pair up, and the old range fills the middle half.
        pairs = self.counts.reshape(-1, 2).sum(axis=1)
        quarter = len(self.counts) // 4
        counts = np.zeros_like(self.counts)
        counts[quarter : quarter + len(pairs)] = pairs
        self.counts = counts
        self.bound *= 2.0

    @property
    def only_non_finite(self) -> bool:
        """Every value seen was NaN/Inf: no range can be derived (an empty tensor is not this)."""
        return self.non_finite > 0 and not np.isfinite(self.minimum)

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(-self.bound, self.bound, len(self.counts) + 1, dtype=np.float32)


@dataclass
class ActivationStatistics:
    """Statistics for every calibrated tensor, plus what they were computed from."""

    tensors: dict[str, TensorHistogram]
    samples: int
    batches: int
    data_digest: str

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "__meta__": np.array([self.samples, self.batches], dtype=np.int64),
            "__digest__": np.array(self.data_digest),
            "__names__": np.array(list(self.tensors)),
        }
        for index, hist in enumerate(self.tensors.values()):
            arrays[f"c{index}"] = hist.counts
            arrays[f"r{index}"] = np.array([hist.bound, hist.minimum, hist.maximum, hist.non_finite])
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> ActivationStatistics:
        with np.load(path, allow_pickle=False) as data:
            samples, batches = (int(v) for v in data["__meta__"])
            tensors = {}
            for index, name in enumerate(data["__names__"]):
                bound, minimum, maximum, *rest = (float(v) for v in data[f"r{index}"])
                non_finite = int(rest[0]) if rest else 0
                hist = TensorHistogram(bound, data[f"c{index}"].copy(), minimum, maximum, non_finite)
                tensors[str(name)] = hist
            return cls(tensors, samples, batches, str(data["__digest__"]))


def collect(
    model_path: Path, tensor_names: list[str], batches: Iterable[dict[str, np.ndarray]], digest_update
) -> ActivationStatistics:
    """Run `model_path` (ONNX Runtime, CPU) on each batch and fold the named tensors into histograms.

    `digest_update(batch)` is called per batch so callers can fingerprint the data they streamed.
    """
    import onnx

    from optcli.backends.onnxruntime import create_session

    model = onnx.load(str(model_path))
    existing = {o.name for o in model.graph.output}
    for name in tensor_names:
        if name not in existing:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    session = _session_from_proto(model, model_path, create_session)
    input_names = [i.name for i in session.get_inputs()]
    histograms = {name: TensorHistogram() for name in tensor_names}
    samples = count = 0
    for batch in batches:
        digest_update(batch)
        size = len(batch[input_names[0]])
        # Every intermediate tensor comes back at once: run a few samples at a time so peak memory
        # stays at a few samples' activations whatever the calibration batch size.
        for start in range(0, size, SAMPLES_PER_RUN):
            feeds = {n: batch[n][start : start + SAMPLES_PER_RUN] for n in input_names}
            for name, value in zip(tensor_names, session.run(tensor_names, feeds)):
                histograms[name].update(np.asarray(value, dtype=np.float32))
        samples += size
        count += 1
    return ActivationStatistics(histograms, samples, count, "")


def _session_from_proto(model, model_path: Path, create_session):
    import tempfile

    import onnx

    # Save beside the original so external data files still resolve.
    with tempfile.TemporaryDirectory(dir=model_path.parent) as tmp:
        path = Path(tmp) / "statistics.onnx"
        onnx.save_model(model, str(path))
        return create_session(path, level="basic")


def float_activations(model_path: Path) -> list[str]:
    """Names of float tensors worth calibrating: graph inputs and every float node output."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path), load_external_data=False))
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    typed = {
        v.name: v.type.tensor_type.elem_type
        for v in [*model.graph.input, *model.graph.value_info, *model.graph.output]
    }
    initializers = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if typed.get(i.name) in floats and i.name not in initializers]
    for node in model.graph.node:
        names += [o for o in node.output if o and typed.get(o) in floats and o not in names]
    return names
