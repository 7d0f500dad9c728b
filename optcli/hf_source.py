"""`model.source: hf:<local folder>` for the ONNX pipeline: a Hugging Face checkpoint folder (config.json
and weights) loaded offline with transformers' AutoModel classes, wrapped so that forward() takes the
recipe's `model.inputs` in order and returns one output tensor.

`model.kwargs` picks the head and the output: `task` (feature-extraction: AutoModel, the default;
sequence-classification; token-classification; masked-lm) and `output` (a field of the model's output
such as last_hidden_state, pooler_output or logits; default: the first one).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from optcli.errors import UserInputError

PREFIX = "hf:"
# Recipe task -> transformers' Auto class.
TASKS = {
    "feature-extraction": "AutoModel",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "masked-lm": "AutoModelForMaskedLM",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")  # what decides the model (tokenizer files too: cheap)


def is_hf(source: str) -> bool:
    return source.startswith(PREFIX)


def hf_folder(source: str, base_dir: Path) -> Path:
    """The checkpoint folder, relative to the recipe; exit 2 naming model.source when it is not one."""
    path = Path(source[len(PREFIX) :])
    folder = path if path.is_absolute() else base_dir / path
    if not (folder / "config.json").is_file():
        what = "has no config.json" if folder.is_dir() else "does not exist"
        raise UserInputError(
            f"model.source: '{source}': the folder {folder} {what}; hf: takes a local Hugging Face "
            "checkpoint folder (config.json and weights, e.g. from save_pretrained)"
        )
    return folder


def hf_files(source: str, base_dir: Path) -> list[Path]:
    """The files the model is built from (for the export stage's cache key)."""
    try:
        folder = hf_folder(source, base_dir)
    except UserInputError:
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def load_hf_model(source: str, base_dir: Path, input_names: list[str], kwargs: dict[str, Any]) -> Any:
    import torch

    from optcli.llm.checkpoint import transformers

    folder = hf_folder(source, base_dir)
    unknown = set(kwargs) - {"task", "output"}
    if unknown:
        raise UserInputError(f"model.kwargs: {sorted(unknown)} not understood for hf: sources (task, output)")
    task = kwargs.get("task", "feature-extraction")
    if task not in TASKS:
        raise UserInputError(f"model.kwargs.task: '{task}' is not one of {', '.join(TASKS)}")
    auto = getattr(transformers(), TASKS[task])
    try:
        body = auto.from_pretrained(str(folder), dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:  # unreadable weights, an architecture the class lacks
        why = f"transformers cannot load it as {task}: {exc}"
        raise UserInputError(f"model.source: '{source}': {why}") from exc
    output = kwargs.get("output")

    class HfModule(torch.nn.Module):  # defined here: torch is imported only when a model is loaded
        """forward(*inputs) -> one tensor: what the exporter and the engines see."""

        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, *inputs: Any) -> Any:
            result = self.body(**dict(zip(input_names, inputs)), return_dict=True)
            if output is None:
                return result[0]
            if output not in result:
                raise UserInputError(
                    f"model.kwargs.output: '{output}' is not an output of this model "
                    f"(it has {', '.join(result.keys())})"
                )
            return result[output]

    # Named parameters, as the recipe's inputs: torch.export matches dynamic shapes to the signature.
    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ["self", *input_names]]
    HfModule.forward.__signature__ = inspect.Signature(params)
    return HfModule()
