"""OpenVINO on CPU for any ONNX artifact of the run (FP32/BF16 graphs and INT8/FP8 Q/DQ graphs)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from optcli.backends.base import OnnxEngine, OnnxEngineConfig, Unavailable
from optcli.optional import OptionalPackage

# OpenVINO element type name (Type.get_type_name()) -> optcli precision name
_PRECISION = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
_QDQ_PRECISIONS = ("int8", "fp8")
OPENVINO = OptionalPackage("openvino", "openvino", ("openvino",), "pip install 'optcli[openvino]'")


class OpenVINOConfig(OnnxEngineConfig):
    engine: Literal["openvino"] = "openvino"
    device: Literal["CPU"] = Field("CPU", description="OpenVINO device.")
    precision_hint: Literal["auto", "f32", "bf16", "f16"] = Field(
        "auto",
        description="INFERENCE_PRECISION_HINT for floating-point layers. auto = the plugin's default, which "
        "is bf16 on CPUs with AVX512_BF16 or AMX (not bit-exact with FP32). The CPU plugin falls back "
        "where a type is not native (f16 runs as bf16 or f32); the report shows what was used.",
    )
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = Field(
        "LATENCY",
        description="PERFORMANCE_HINT. THROUGHPUT makes several streams, which one synchronous request "
        "(what the benchmark times) cannot use.",
    )
    threads: int | None = Field(None, ge=1, description="INFERENCE_NUM_THREADS. Default: OpenVINO's.")


class OpenVINOEngine(OnnxEngine):
    config: OpenVINOConfig

    @classmethod
    def unavailable(cls, config: OpenVINOConfig, precision: str | None = None) -> Unavailable | None:
        if not OPENVINO.found():
            return Unavailable("openvino is not installed", OPENVINO.install)
        return None

    def _compile_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.config.performance_hint}
        if self.config.precision_hint != "auto":
            config["INFERENCE_PRECISION_HINT"] = self.config.precision_hint
        if self.config.threads:
            config["INFERENCE_NUM_THREADS"] = self.config.threads
        return config

    def _core(self):
        if getattr(self, "_ov_core", None) is None:
            import openvino as ov

            self._ov_core = ov.Core()
        return self._ov_core

    def inference_precision(self) -> str:
        """The floating-point precision OpenVINO uses: the compiled model's, or before load() a
        one-node probe compiled with the same config (labels are made before engines load, and
        the plugin resolves 'auto' and unsupported hints per machine)."""
        compiled = getattr(self, "_compiled", None)
        if compiled is None:
            if getattr(self, "_probed", None) is None:
                import openvino as ov
                import openvino.opset13 as ops

                param = ops.parameter([1], np.float32)
                probe = ov.Model([ops.relu(param)], [param])
                self._probed = self._core().compile_model(probe, self.config.device, self._compile_config())
            compiled = self._probed
        name = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        return _PRECISION.get(name, name)

    def default_label(self) -> str:
        return f"openvino-{self.precision}"

    @property
    def precision(self) -> str:
        artifact_precision = self.context.precisions.get(self._artifact()[0], "fp32")
        if artifact_precision in _QDQ_PRECISIONS:
            return artifact_precision  # Q/DQ layers run in INT8/FP8 whatever the float hint says
        return self.inference_precision()

    def _load_impl(self) -> None:
        _, path = self._artifact()
        core = self._core()
        # read_model keeps dynamic ONNX dims (batch, seq) dynamic: no reshape needed.
        model = core.read_model(str(path))
        self._compiled = core.compile_model(model, self.config.device, self._compile_config())
        self._probed = None
        self._request = self._compiled.create_infer_request()
        self._inputs = [port.get_any_name() for port in self._compiled.inputs]
        self._bound: Any = None

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._bound is not None:
            # A bind() set the caller's arrays as the input tensors: infer(dict) would copy into
            # them, and a larger batch does not fit ("Could set new shape"). A fresh request does.
            self._request = self._compiled.create_infer_request()
            self._bound = None
        result = self._request.infer(self.ordered_feeds(feeds, self._inputs))
        return [np.asarray(result[port]) for port in self._compiled.outputs]  # copies: share_outputs=False

    def _bind_impl(self, feeds: dict[str, np.ndarray]) -> list[Any]:
        import openvino as ov

        arrays = self.ordered_feeds(feeds, self._inputs)
        return [(name, ov.Tensor(array, shared_memory=True), array) for name, array in arrays.items()]

    def _run_bound_impl(self, bound: list[Any]) -> None:
        if self._bound is not bound:
            for name, tensor, _ in bound:
                self._request.set_tensor(name, tensor)
            self._bound = bound
        self._request.infer(share_outputs=True)  # no output copies in the timed loop

    def _close_impl(self) -> None:
        del self._request, self._compiled
        self._bound = None

    def describe(self) -> dict[str, Any]:
        import openvino as ov

        compiled = self._compiled if self._loaded else None
        return {
            **super().describe(),
            "runtime": f"openvino {ov.get_version().split('-')[0]}",
            "device": self._core().get_property(self.config.device, "FULL_DEVICE_NAME"),
            "precision_hint": self.config.precision_hint,
            "inference_precision": self.inference_precision(),
            "performance_hint": self.config.performance_hint,
            "threads": compiled.get_property("INFERENCE_NUM_THREADS") if compiled else self.config.threads,
            "streams": compiled.get_property("NUM_STREAMS") if compiled else None,
        }
