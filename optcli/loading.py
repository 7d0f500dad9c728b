"""Load the PyTorch model a recipe names and check it against the declared inputs."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optcli.errors import OptcliError, UserInputError
from optcli.userimport import resolve_callable

if TYPE_CHECKING:
    import torch

    from optcli.recipe.models import ModelSection


def load_torch_model(section: ModelSection, base_dir: Path) -> torch.nn.Module:
    """Build or load the model in eval mode on CPU, with the optional checkpoint applied."""
    import torch

    source = section.source
    if source.endswith((".pt2",)):
        model = _load_exported_program(_existing(source, base_dir, "model.source"))
    elif source.endswith((".pt", ".pth", ".ts", ".torchscript")) and ":" not in source:
        model = _load_torchscript(_existing(source, base_dir, "model.source"))
    else:
        factory = resolve_callable(source, base_dir=base_dir, field="model.source")
        try:
            model = factory(**section.kwargs)
        except OptcliError:
            raise  # e.g. a missing optional package inside the factory keeps its exit code
        except TypeError as exc:
            raise UserInputError(f"model.kwargs: calling '{source}' failed: {exc}") from exc
        except Exception as exc:
            raise UserInputError(f"model.source: '{source}' raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise UserInputError(
            f"model.source: '{source}' returned a {type(model).__name__}, expected a torch.nn.Module"
        )
    if section.checkpoint:
        _load_checkpoint(model, _existing(section.checkpoint, base_dir, "model.checkpoint"))
    with contextlib.suppress(NotImplementedError):  # torch.export modules refuse eval(): already inference
        model.eval()
    return model


def _existing(path_text: str, base_dir: Path, field: str) -> Path:
    path = Path(path_text)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise UserInputError(f"{field}: file '{path}' does not exist")
    return path


def _load_exported_program(path: Path) -> torch.nn.Module:
    import torch

    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:
        raise UserInputError(f"model.source: '{path}' is not a torch.export .pt2 file: {exc}") from exc


def _load_torchscript(path: Path) -> torch.nn.Module:
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise UserInputError(
            f"model.source: '{path}' is not a TorchScript file ({exc}). For a state_dict, give the "
            "model's constructor as model.source and this file as model.checkpoint."
        ) from exc


def _load_checkpoint(model: torch.nn.Module, path: Path) -> None:
    import torch

    try:
        # weights_only: a checkpoint is data; never let it run code.
        state: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserInputError(f"model.checkpoint: cannot load '{path}' with weights_only=True: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserInputError(f"model.checkpoint: '{path}' holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise UserInputError(
            f"model.checkpoint: '{path}' does not match the model: {' '.join(first[:3])}"
        ) from exc
