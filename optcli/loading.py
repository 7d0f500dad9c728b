"""Load the PyTorch model a recipe names and check it against the declared inputs."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optcli.errors import OptcliError, UserInputError
from optcli.hf_source import is_hf, load_hf_model
from optcli.userimport import describe_exception, resolve_callable

_LISTED_KEYS = 5  # state_dict keys named per kind of mismatch; the rest are counted

if TYPE_CHECKING:
    import torch

    from optcli.recipe.models import ModelSection


def load_torch_model(section: ModelSection, base_dir: Path) -> torch.nn.Module:
    """Build or load the model in eval mode on CPU, with the optional checkpoint applied."""
    import torch

    source = section.source
    if is_hf(source):
        model = load_hf_model(source, base_dir, [spec.name for spec in section.inputs], section.kwargs)
    elif source.endswith((".pt2",)):
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
            raise UserInputError(
                f"model.kwargs: calling '{source}' failed: {describe_exception(exc, base_dir)}"
            ) from exc
        except Exception as exc:
            why = describe_exception(exc, base_dir)
            raise UserInputError(f"model.source: '{source}' raised {why}") from exc
    if not isinstance(model, torch.nn.Module):
        raise UserInputError(
            f"model.source: '{source}' returned a {type(model).__name__}, expected a torch.nn.Module"
        )
    if section.checkpoint:
        _load_checkpoint(model, _existing(section.checkpoint, base_dir, "model.checkpoint"))
    with contextlib.suppress(NotImplementedError):  # torch.export modules refuse eval(): already inference
        model.eval()
    check_input_dtypes(model, section, base_dir)
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
        raise UserInputError(
            f"model.source: '{path}' is not a torch.export .pt2 file: {describe_exception(exc)}"
        ) from exc


def _load_torchscript(path: Path) -> torch.nn.Module:
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise UserInputError(
            f"model.source: '{path}' is not a TorchScript file ({describe_exception(exc)}). For a "
            "state_dict, give the model's constructor as model.source and this file as model.checkpoint."
        ) from exc


def _load_checkpoint(model: torch.nn.Module, path: Path) -> None:
    import torch

    try:
        # weights_only: a checkpoint is data; never let it run code.
        state: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserInputError(
            f"model.checkpoint: cannot load '{path}' with weights_only=True: {describe_exception(exc)}"
        ) from exc
    state = _unwrap_state(state)
    if not isinstance(state, dict):
        raise UserInputError(f"model.checkpoint: '{path}' holds a {type(state).__name__}, not a state_dict")
    expected = model.state_dict()
    mismatched = [
        f"{key} (checkpoint {list(value.shape)}, model {list(expected[key].shape)})"
        for key, value in state.items()
        if key in expected and isinstance(value, torch.Tensor) and value.shape != expected[key].shape
    ]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if not mismatched:
        # torch decides which keys a module may lack (e.g. BatchNorm's num_batches_tracked).
        try:
            result = model.load_state_dict(state, strict=False)
        except Exception as exc:
            raise UserInputError(
                f"model.checkpoint: '{path}' does not load into the model: {describe_exception(exc)}"
            ) from exc
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected or mismatched:
        problems = [
            text
            for text in (
                _counted(missing, "missing key"),
                _counted(unexpected, "unexpected key"),
                _counted(mismatched, "shape mismatch", "shape mismatches"),
            )
            if text
        ]
        listed = ", ".join(problems[:-1]) + " and " + problems[-1] if len(problems) > 1 else problems[0]
        raise UserInputError(
            f"model.checkpoint: '{path}' does not match the model: the checkpoint has {listed}",
            hint=_prefix_hint(list(state), list(expected)),
        )


def _unwrap_state(state: Any) -> Any:
    """The state_dict inside a training checkpoint ({'state_dict': ...}, {'model': ...})."""
    if isinstance(state, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(state.get(key), dict):
                return state[key]
    return state


def _counted(items: list[str], noun: str, plural: str | None = None) -> str:
    if not items:
        return ""
    name = noun if len(items) == 1 else plural or f"{noun}s"
    listed = ", ".join(items[:_LISTED_KEYS])
    if len(items) > _LISTED_KEYS:
        listed += f", ... {len(items) - _LISTED_KEYS} more"
    return f"{len(items)} {name} ({listed})"


def _prefix_hint(found: list[str], wanted: list[str]) -> str | None:
    """Say so when every checkpoint key differs from the model's by one prefix (DataParallel's 'module.')."""
    for prefix in {k.split(".", 1)[0] + "." for k in found if "." in k}:
        if {k.removeprefix(prefix) for k in found} >= set(wanted) and wanted:
            return f"the checkpoint's keys start with '{prefix}': strip it (e.g. saved from DataParallel/DDP)"
    return "give model.source the constructor (and model.kwargs) the checkpoint was saved from"


def check_input_dtypes(model: torch.nn.Module, section: ModelSection, base_dir: Path | None = None) -> None:
    """Refuse a declared float input dtype the model cannot take (float16 for an FP32 model), naming
    `model.inputs.N.dtype`, before export or an engine fails on it with the framework's own error.

    Runs a forward only when a declared float dtype differs from the parameters' dtype, and blames
    the dtype only if the same forward works with the parameters' dtype (a model may cast inputs).
    """
    import torch

    from optcli.export import example_inputs
    from optcli.specs import ShapeResolver

    # What each declared dtype reaches forward() as: numpy has no bfloat16, so it arrives as float32.
    fed = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.float32}
    params = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(params) != 1:
        return
    (param_dtype,) = params
    odd = [(i, s) for i, s in enumerate(section.inputs) if s.dtype in fed and fed[s.dtype] != param_dtype]
    if not odd:
        return
    feeds = example_inputs(ShapeResolver(section.inputs, section.dims, section.batch_dim))
    args = [torch.from_numpy(feeds[s.name]) for s in section.inputs]
    failure = _forward_error(model, args)
    if failure is None:
        return
    odd_names = {s.name for _, s in odd}
    cast = [a.to(param_dtype) if s.name in odd_names else a for a, s in zip(args, section.inputs)]
    if _forward_error(model, cast) is not None:
        return  # not a dtype problem: export reports the model's rejection of the inputs
    index, spec = odd[0]
    model_dtype = str(param_dtype).removeprefix("torch.")
    raise UserInputError(
        f"model.inputs.{index}.dtype: input '{spec.name}' is declared {spec.dtype}, but the model's "
        f"parameters are {model_dtype} and its forward() fails on {spec.dtype} input "
        f"({describe_exception(failure, base_dir)}); it runs when the input is {model_dtype}",
        hint=f"declare dtype: {model_dtype}; for a half-precision artifact keep the inputs as the model "
        "takes them and set quantization.precision: fp16",
    )


def _forward_error(model: torch.nn.Module, args: list) -> Exception | None:
    import torch

    try:
        with torch.inference_mode():
            model(*args)
    except Exception as exc:
        return exc
    return None
