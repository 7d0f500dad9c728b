"""PyTorch -> ONNX with the recipe's dynamic dims, checked by onnx.checker and against PyTorch."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optcli import interrupts
from optcli.capture import captured_output
from optcli.chain import first_sentence, reraise_interrupt
from optcli.errors import OptcliError, StageError, UserInputError
from optcli.export_errors import export_failure, traced_one_path
from optcli.flatten import flatten_outputs
from optcli.quiet import TORCH_EXPORT_LOGGERS
from optcli.specs import ShapeResolver


@dataclass
class ExportResult:
    path: Path
    exporter: str
    output_names: list[str]
    notes: list[str] = field(default_factory=list)


def example_inputs(resolver: ShapeResolver, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for tracing. Dynamic dims get size >= 2: torch.export specializes sizes 0 and 1."""
    from optcli.calibration.synthetic import random_batch

    sizes = {name: min(max(2, rng.typical), rng.max) for name, rng in resolver.dims.items()}
    return random_batch(resolver, sizes, seed)


def run_torch(model: Any, resolver: ShapeResolver, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run the model once; a failure here means the declared inputs do not fit the model."""
    import torch

    args = [torch.from_numpy(feeds[spec.name]) for spec in resolver.inputs]
    try:
        with torch.inference_mode():
            outputs = flatten_outputs(model(*args))
    except Exception as exc:
        reraise_interrupt(exc)
        shapes = ", ".join(f"{s.name}{tuple(feeds[s.name].shape)}" for s in resolver.inputs)
        first_line = first_sentence(str(exc), 300) or type(exc).__name__
        raise UserInputError(
            f"model.inputs: the model rejected inputs shaped like the recipe declares ({shapes}): "
            f"{first_line}"
        ) from exc
    if not outputs or not all(isinstance(o, torch.Tensor) for o in outputs):
        raise UserInputError("model.source: the model must return tensors (or tuples/dicts of tensors)")
    return [o.detach().float().numpy() if o.dtype == torch.bfloat16 else o.detach().numpy() for o in outputs]


def export_onnx(
    model: Any,
    resolver: ShapeResolver,
    dst: Path,
    *,
    exporter: str,
    opset: int,
    output_names: list[str] | None,
    external_data: bool | None,
    log_path: Path | None = None,
) -> ExportResult:
    """Export and check `dst`. Everything the exporter prints goes to `log_path` (kept on success and
    failure; discarded when None), never to the terminal."""
    import torch

    feeds = example_inputs(resolver)
    reference = run_torch(model, resolver, feeds)
    names = output_names or [f"output_{i}" for i in range(len(reference))]
    if len(names) != len(reference):
        raise UserInputError(
            f"model.outputs: {len(names)} names given but the model returns {len(reference)} tensors"
        )
    notes = []
    if exporter == "dynamo" and isinstance(model, torch.jit.ScriptModule):
        exporter = "torchscript"
        notes.append("TorchScript model: exported with the TorchScript exporter")
    args = tuple(torch.from_numpy(feeds[spec.name]) for spec in resolver.inputs)
    try:
        with captured_output(
            log_path,
            title=f"torch.onnx.export ({exporter} exporter) -> {dst.name}",
            loggers=TORCH_EXPORT_LOGGERS,
        ) as captured:
            _run_exporter(model, args, resolver, names, dst, exporter, opset, external_data)
    except OptcliError:
        raise
    except Exception as exc:
        reraise_interrupt(exc)  # torch wraps a Ctrl-C in its own errors: that is no export failure
        raise export_failure(exc, exporter=exporter, opset=opset, model=model, log=log_path) from exc
    interrupts.check()  # torch's capture strategies catch errors and try the next: a Ctrl-C may be hidden
    if exporter == "torchscript":
        notes += traced_one_path(captured.warnings, model)
    _check(dst)
    return ExportResult(path=dst, exporter=exporter, output_names=names, notes=notes)


def _run_exporter(
    model: Any,
    args: tuple[Any, ...],
    resolver: ShapeResolver,
    names: list[str],
    dst: Path,
    exporter: str,
    opset: int,
    external_data: bool | None,
) -> None:
    import torch

    input_names = [spec.name for spec in resolver.inputs]
    if exporter == "dynamo":
        program = torch.onnx.export(
            model,
            args,
            dynamo=True,
            input_names=input_names,
            output_names=names,
            dynamic_shapes=_dynamic_shapes(resolver),
            opset_version=opset,
            verbose=True,  # the log says which capture strategy failed and why
            external_data=bool(external_data),
            optimize=True,
        )
        _save_program(program, dst, external_data)
    else:
        torch.onnx.export(
            model,
            args,
            str(dst),
            dynamo=False,
            input_names=input_names,
            output_names=names,
            dynamic_axes=_dynamic_axes(resolver, names),
            opset_version=opset,
        )


def _save_program(program: Any, dst: Path, external_data: bool | None) -> None:
    from optcli.onnx_io import save_model

    save_model(program.model_proto, dst, external_data=external_data)


def _dynamic_shapes(resolver: ShapeResolver) -> tuple[dict[int, Any], ...]:
    from torch.export import Dim

    dims = {name: Dim(name, min=rng.min, max=rng.max) for name, rng in resolver.dims.items()}
    return tuple(
        {axis: dims[d] for axis, d in enumerate(spec.shape) if isinstance(d, str)} for spec in resolver.inputs
    )


def _dynamic_axes(resolver: ShapeResolver, output_names: list[str]) -> dict[str, dict[int, str]]:
    axes = {
        spec.name: {i: d for i, d in enumerate(spec.shape) if isinstance(d, str)} for spec in resolver.inputs
    }
    for name in output_names:  # outputs follow the batch dim; other output dims stay as traced
        axes[name] = {0: resolver.batch_dim}
    return axes


def _check(path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        if "single static assignment" in str(exc):  # a model.outputs name equals an internal tensor's
            raise UserInputError(
                f"model.outputs: an output name is also the name of a tensor inside the exported graph "
                f"({str(exc).splitlines()[0]})",
                hint="choose other names in model.outputs (e.g. add a suffix)",
            ) from exc
        raise StageError(f"export: onnx.checker rejected '{path.name}': {str(exc).splitlines()[0]}") from exc
