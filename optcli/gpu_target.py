"""`target: gpu`: the engine/precision candidates on a CUDA GPU, in the order they are tried.

What a candidate needs beyond the GPU (torchao, TensorRT, onnxruntime-gpu) is each engine's own
`unavailable` check: the plan lists the ones that cannot run under `not_available` with the fix.
Precisions the GPU lacks are not planned at all: BF16 needs compute capability 8.0, FP8 8.9.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optcli.backends.base import EngineConfig
from optcli.recipe import Recipe

if TYPE_CHECKING:
    from optcli.plan import Gpu

BF16_CAPABILITY = (8, 0)  # Ampere
FP8_CAPABILITY = (8, 9)  # Ada / Hopper


def gpu_candidates(recipe: Recipe, gpu: Gpu, artifacts: dict[str, str]) -> list[EngineConfig]:
    from optcli.backends.aoti_engine import AotiConfig
    from optcli.backends.onnxruntime_gpu import OnnxRuntimeGpuConfig
    from optcli.backends.tensorrt import TensorRTConfig
    from optcli.backends.torch_engine import TorchConfig

    bf16 = gpu.capability >= BF16_CAPABILITY
    low, short = ("bfloat16", "bf16") if bf16 else ("float16", "fp16")
    float_artifact = "optimized" if "optimized" in artifacts else "exported"
    candidates: list[EngineConfig] = [TorchConfig(name="torch-fp16-cuda", device="cuda", dtype="float16")]
    if bf16:
        candidates.append(TorchConfig(name="torch-bf16-cuda", device="cuda", dtype="bfloat16"))
    candidates += [
        # max-autotune: Triton/template GEMM and conv autotuning, and CUDA graphs on GPU.
        TorchConfig(
            name=f"torch-compile-{short}-cuda",
            device="cuda",
            dtype=low,
            compile=True,
            compile_mode="max-autotune",
        ),
        AotiConfig(name=f"aoti-{short}-cuda", device="cuda", dtype=low),
        TorchConfig(name="torchao-int8wo-cuda", device="cuda", quantize="int8_weight_only", compile=True),
        TorchConfig(name="torchao-int8-cuda", device="cuda", quantize="int8_dynamic", compile=True),
    ]
    if gpu.capability >= FP8_CAPABILITY:
        candidates.append(
            TorchConfig(name="torchao-fp8-cuda", device="cuda", quantize="fp8_dynamic", compile=True)
        )
    candidates.append(
        TensorRTConfig(name=f"trt-{artifacts.get(float_artifact, 'fp32')}", artifact=float_artifact)
    )
    if artifacts.get("quantized") == "int8":
        candidates.append(TensorRTConfig(name="trt-int8", artifact="quantized"))
    candidates += [
        OnnxRuntimeGpuConfig(name="ort-cuda", provider="cuda", artifact=float_artifact),
        OnnxRuntimeGpuConfig(
            name="ort-trt-fp16", provider="tensorrt", artifact=float_artifact, trt_fp16_enable=True
        ),
    ]
    return candidates
