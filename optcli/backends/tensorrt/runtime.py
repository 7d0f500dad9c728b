"""Run a plan: TensorRT runtime objects, torch CUDA tensors as buffers, one non-default CUDA stream.

API facts (NVIDIA/TensorRT python/src/infer/pyCore.cpp, v10.0.0..v11.1): Runtime.deserialize_cuda_engine,
ICudaEngine.num_io_tensors/get_tensor_name/get_tensor_mode/get_tensor_dtype/get_tensor_profile_shape/
create_execution_context/create_engine_inspector, IExecutionContext.set_input_shape (returns bool)/
get_tensor_shape/set_tensor_address/execute_async_v3(stream_handle). Enqueue once before CUDA graph
capture so lazy initialisation is not captured (samples/common/sampleInference.cpp).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from optcli.backends.tensorrt.compat import create, enum_name
from optcli.errors import StageError

Shape = tuple[int, ...]
# TensorRT DataType names -> torch dtype names (by name: enum values were renumbered in 11).
TORCH_DTYPES = {
    "FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
    "INT32": "int32", "INT64": "int64", "BOOL": "bool", "FP8": "float8_e4m3fn",
}  # fmt: skip


class PlanSession:
    """Deserialized engine + one execution context; nothing here touches CUDA memory from Python."""

    def __init__(self, trt: ModuleType, logger: Any, plan: bytes) -> None:
        self.trt = trt
        self.runtime = create(trt.Runtime, logger)  # must outlive the engine
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            detail = "; ".join(logger.take()[-3:]) or "no message"
            raise StageError(
                "tensorrt: the plan could not be deserialized (built by another TensorRT version or for "
                f"another GPU?): {detail}"
            )
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise StageError("tensorrt: could not create an execution context (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        modes = {name: enum_name(self.engine.get_tensor_mode(name)) for name in names}
        self.inputs = [n for n in names if modes[n] == "INPUT"]
        self.outputs = [n for n in names if modes[n] == "OUTPUT"]

    def dtype(self, name: str) -> str:
        """torch dtype name of an I/O tensor."""
        trt_name = enum_name(self.engine.get_tensor_dtype(name))
        if trt_name not in TORCH_DTYPES:
            raise StageError(f"tensorrt: I/O tensor '{name}' has type {trt_name}, which optcli cannot feed")
        return TORCH_DTYPES[trt_name]

    def profile_range(self, name: str) -> tuple[Shape, Shape, Shape]:
        low, opt, high = self.engine.get_tensor_profile_shape(name, 0)
        return tuple(low), tuple(opt), tuple(high)

    def set_input_shapes(self, shapes: dict[str, Shape]) -> dict[str, Shape]:
        """Set every input's shape; returns the output shapes TensorRT infers from them."""
        for name in self.inputs:
            if name not in shapes:
                raise StageError(f"tensorrt: no data for engine input '{name}' (got {sorted(shapes)})")
            if not self.context.set_input_shape(name, tuple(shapes[name])):
                low, opt, high = self.profile_range(name)
                raise StageError(
                    f"tensorrt: input '{name}' shape {tuple(shapes[name])} is outside the engine's "
                    f"optimization profile (min {low}, opt {opt}, max {high})",
                    hint="widen model.dims (or this engine's profile:) and rebuild",
                )
        outputs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):  # data-dependent (e.g. NonZero): would need an IOutputAllocator
                raise StageError(
                    f"tensorrt: output '{name}' has a data-dependent shape {shape}; not supported"
                )
            outputs[name] = shape
        return outputs

    def execute(self, stream_handle: int) -> None:
        if not self.context.execute_async_v3(stream_handle):
            raise StageError("tensorrt: execute_async_v3 failed (see TensorRT's log)")

    def inspect(self) -> str:
        """Engine inspector JSON; call after input shapes are set so formats of dynamic tensors show."""
        inspector = self.engine.create_engine_inspector()
        inspector.execution_context = self.context
        return inspector.get_engine_information(self.trt.LayerInformationFormat.JSON)

    def close(self) -> None:
        self.context = None  # context before engine before runtime
        self.engine = None
        self.runtime = None


@dataclass
class Bound:
    """Device tensors for one set of inputs, and the CUDA graph that replays an inference on them."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]
    graph: Any = None


class DeviceRunner:
    """torch CUDA tensors as TensorRT buffers; copies, inference and graphs all on one private stream."""

    def __init__(self, session: PlanSession) -> None:
        import torch

        self.torch = torch
        self.session = session
        self.stream = torch.cuda.Stream()  # not the default stream: TensorRT syncs extra on stream 0
        self._active: Bound | None = None

    def bind(self, feeds: dict[str, np.ndarray], *, graph: bool = False) -> Bound:
        torch = self.torch
        missing = [n for n in self.session.inputs if n not in feeds]
        if missing:
            raise StageError(f"tensorrt: no data for engine input(s) {missing} (got {sorted(feeds)})")
        out_shapes = self.session.set_input_shapes(
            {n: tuple(np.shape(feeds[n])) for n in self.session.inputs}
        )
        self._active = None  # the context's shapes now belong to this bind
        with torch.cuda.stream(self.stream):
            inputs = {
                n: torch.from_numpy(np.ascontiguousarray(feeds[n]))
                .to("cuda")
                .to(getattr(torch, self.session.dtype(n)))
                .contiguous()
                for n in self.session.inputs
            }
            outputs = {
                n: torch.empty(shape, dtype=getattr(torch, self.session.dtype(n)), device="cuda")
                for n, shape in out_shapes.items()
            }
        bound = Bound(inputs, outputs)
        if graph:
            self._capture(bound)
        return bound

    def _activate(self, bound: Bound) -> None:
        """Point the context at this bound's tensors (another bind may have moved it)."""
        if self._active is bound:
            return
        self.session.set_input_shapes({n: tuple(t.shape) for n, t in bound.inputs.items()})
        for name, tensor in {**bound.inputs, **bound.outputs}.items():
            self.session.context.set_tensor_address(name, tensor.data_ptr())
        self._active = bound

    def execute(self, bound: Bound) -> None:
        if bound.graph is not None:
            with self.torch.cuda.stream(self.stream):
                bound.graph.replay()
            return
        self._activate(bound)
        self.session.execute(self.stream.cuda_stream)

    def _capture(self, bound: Bound) -> None:
        torch = self.torch
        self.execute(bound)  # first enqueue after a shape change does setup that must not be captured
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self.session.execute(self.stream.cuda_stream)
        except RuntimeError as exc:
            raise StageError(
                f"tensorrt: CUDA graph capture failed: {exc}", hint="set cuda_graph: false"
            ) from exc
        bound.graph = graph

    def fetch(self, bound: Bound, names: list[str]) -> list[np.ndarray]:
        self.stream.synchronize()
        result = []
        for name in names:
            tensor = bound.outputs[name]
            if tensor.is_floating_point() and tensor.dtype != self.torch.float64:
                tensor = tensor.float()  # FP16/BF16/FP8 outputs compared in FP32, as the torch engine does
            result.append(tensor.cpu().numpy())
        return result

    def synchronize(self) -> None:
        self.stream.synchronize()
