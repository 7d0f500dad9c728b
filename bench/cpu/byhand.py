"""By-hand quantization: what the ORT and OpenVINO/NNCF docs show, with their defaults."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import numpy as np


def quantize_ort_by_hand(src: Path, dst: Path, calibration: list[dict[str, np.ndarray]]) -> None:
    """What the ORT docs show: their pre-processing (quant_pre_process: symbolic shape inference
    and ORT's graph optimizations), then quantize_static with its defaults, per_channel=True.
    Without the pre-processing, ORT 1.32 could not load the quantize_static output of the
    dynamo-exported ViT-B/16 and MiniLM ("Attempt to replace the existing tensor")."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from optcli.quiet import quiet_loggers  # ORT's "consider pre-processing" warning on the root logger

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(calibration)

        def get_next(self) -> dict | None:
            return next(self.items, None)

    # Defaults: QDQ format, QUInt8 activations, QInt8 weights, MinMax, every op type ORT can quantize.
    prepared = dst.with_name(dst.stem + "-pre.onnx")
    with contextlib.redirect_stdout(io.StringIO()), quiet_loggers(""):
        quant_pre_process(str(src), str(prepared))
        quantize_static(str(prepared), str(dst), Reader(), per_channel=True)
    prepared.unlink()


def quantize_nncf_by_hand(src: Path, samples: list[dict[str, np.ndarray]], transformer: bool) -> Any:
    """What the OpenVINO/NNCF docs show: read the model, nncf.quantize with a Dataset, compile."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(src))
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(
            model,
            nncf.Dataset(samples),
            subset_size=len(samples),
            model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        )


def convert_from_torch(model: Any, sample: dict[str, np.ndarray], input_names: list[str]) -> Any:
    """`ov.convert_model` of the PyTorch model itself (no ONNX in between), OpenVINO's defaults.
    Where its TorchScript trace fails (ViT-B/16 in OpenVINO 2026.x: "Tracing failed sanity checks"),
    the torch.export program instead, which convert_model also takes."""
    import openvino as ov
    import torch

    example = tuple(torch.from_numpy(sample[n]) for n in input_names)
    try:
        return ov.convert_model(model, example_input=example[0] if len(example) == 1 else example)
    except Exception as exc:  # any trace failure: try the other front end
        print(f"ov.convert_model(traced) failed ({type(exc).__name__}); converting torch.export's program")
        with torch.no_grad():
            return ov.convert_model(torch.export.export(model, example))


def quantize_nncf_from_torch(
    model: Any, samples: list[dict[str, np.ndarray]], input_names: list[str], transformer: bool
) -> Any:
    """The other path the OpenVINO docs show: `ov.convert_model` of the PyTorch model itself (no ONNX
    in between), then nncf.quantize on that model."""
    import nncf

    converted = convert_from_torch(model, samples[0], input_names)
    feeds = [tuple(s[n] for n in input_names) if len(input_names) > 1 else s[input_names[0]] for s in samples]
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(
            converted,
            nncf.Dataset(feeds),
            subset_size=len(samples),
            model_type=nncf.ModelType.TRANSFORMER if transformer else None,
        )
