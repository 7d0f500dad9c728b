"""Turn an exporter's exception into one paragraph: what failed, where in the user's code, what to do.

torch's own messages are pages long (boilerplate "next steps", graph dumps, terminal colors); the
cause is the innermost exception of the chain and the place is the innermost frame in the model's
source files. The hints must be true: the TorchScript exporter is not a fix for data-dependent
control flow, it records only the branch the example inputs take.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from optcli.chain import Frame, first_sentence, is_library, root_cause, user_frame, walk
from optcli.errors import StageError

TORCHSCRIPT_CAVEAT = (
    "the TorchScript exporter traces the Python code with the example inputs and records only the path "
    "they take (branches on tensor values are frozen, the other branch is dropped without an error)"
)
_DATA_DEPENDENT = ("GuardOnDataDependentSymNode", "DataDependentOutputException", "PendingUnbackedSymbol")


def export_failure(
    exc: BaseException, *, exporter: str, opset: int, model: Any, log: Path | None
) -> StageError:
    cause = root_cause(exc)
    frame = user_frame(exc, prefer=model_files(model))
    at = f" at {frame.where()}{_code(frame)}" if frame else ""
    what = f"{type(cause).__name__}: {first_sentence(str(cause)) or 'no message'}"
    names = {type(e).__name__ for e in walk(exc)}
    text = " ".join(first_sentence(str(e), 400) for e in walk(exc))
    if exporter == "torchscript":
        summary, hint = f"the torchscript exporter failed{at} ({what})", "try --set export.exporter=dynamo"
    elif names & set(_DATA_DEPENDENT) or "data-dependent" in text or "data dependent" in text:
        summary = (
            f"torch.export cannot trace the model: the Python branch{at} depends on a tensor's values, "
            f"which one exported graph cannot hold ({what})"
        )
        hint = (
            "rewrite the branch with torch.cond(pred, true_fn, false_fn, (x,)) or torch.where, which "
            "export both paths; --set export.exporter=torchscript also exports, but " + TORCHSCRIPT_CAVEAT
        )
    elif "Constraints violated" in text:
        summary = f"torch.export found that the model fixes a dim the recipe declares dynamic{at} ({what})"
        hint = "declare that dim with a fixed size in model.inputs, or make the model accept any size"
    elif "ConversionError" in names or "DispatchError" in names:
        summary = f"the traced graph could not be converted to ONNX opset {opset}{at} ({what})"
        hint = (
            "a newer export.opset may cover the operator; or replace it in the model; "
            "--set export.exporter=torchscript has its own operator coverage, but " + TORCHSCRIPT_CAVEAT
        )
    else:
        summary = f"torch.export cannot trace the model{at} ({what})"
        hint = (
            "see https://pytorch.org/docs/stable/generated/exportdb/index.html for what torch.export "
            "supports; --set export.exporter=torchscript is an alternative, but " + TORCHSCRIPT_CAVEAT
        )
    logged = f"; torch's full output is in {log}" if log is not None else ""
    return StageError(f"export: {summary}{logged}", hint=hint)


def traced_one_path(captured_warnings: list[Any], model: Any) -> list[str]:
    """Notes for the TorchScript exporter's TracerWarnings: each marks a place in the user's code where
    the trace froze a value (usually a branch on a tensor), so other inputs may take another path."""
    notes = []
    files = {os.path.realpath(f) for f in model_files(model)}
    for warning in captured_warnings:
        if warning.category.__name__ != "TracerWarning":
            continue
        frame = Frame(warning.filename, warning.lineno, "")
        if os.path.realpath(warning.filename) not in files and is_library(warning.filename):
            continue
        notes.append(
            f"TorchScript export at {frame.where()}: {first_sentence(str(warning.message))} The exported "
            "graph records only the path the example inputs took; other inputs may need another path "
            "(exporter: dynamo with torch.cond exports both)"
        )
    return list(dict.fromkeys(notes))


def model_files(model: Any) -> list[str]:
    """Source files of the model's module classes that are not torch's own."""
    import torch

    torch_dir = os.path.realpath(os.path.dirname(torch.__file__)) + os.sep
    files = []
    modules = model.modules() if isinstance(model, torch.nn.Module) else [model]
    for module in modules:
        try:
            file = inspect.getsourcefile(type(module))
        except (TypeError, OSError):
            continue
        if file and not os.path.realpath(file).startswith(torch_dir):
            files.append(file)
    return list(dict.fromkeys(files))


def _code(frame: Frame) -> str:
    return f" `{frame.code}`" if frame.code else ""
