"""PyTorch eager: the baseline every other engine is compared with."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from optcli.backends.base import Engine, EngineConfig
from optcli.flatten import flatten_outputs


class TorchConfig(EngineConfig):
    engine: Literal["torch"] = "torch"
    device: Literal["cpu"] = Field("cpu", description="Device to run on.")
    dtype: Literal["float32"] = Field("float32", description="Compute dtype.")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads. Default: torch's.")


class TorchEagerEngine(Engine):
    config: TorchConfig

    def default_label(self) -> str:
        return f"torch-eager-{self.precision}"

    @property
    def precision(self) -> str:
        return {"float32": "fp32"}[self.config.dtype]

    def _load_impl(self) -> None:
        import torch

        self._torch = torch
        self._model = self.context.torch_model()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)

    def _run_impl(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in self.context.input_names]
        with torch.inference_mode():
            outputs = self._model(*args)
        return [t.detach().cpu().numpy() for t in flatten_outputs(outputs)]

    def describe(self) -> dict[str, Any]:
        import torch

        return {
            **super().describe(),
            "runtime": f"torch {torch.__version__}",
            "device": self.config.device,
            "mode": "eager",
        }
