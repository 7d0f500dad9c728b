"""Hugging Face checkpoint folders: load the model, save it (plain or compressed-tensors), check what
was saved and load it back the way vLLM and transformers read it."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optcli.errors import MissingDependencyError, UserInputError
from optcli.optional import OptionalPackage
from optcli.quiet import verbose

INSTALL = "pip install 'optcli[llm]'"
TRANSFORMERS = OptionalPackage("transformers", "transformers", ("transformers",), INSTALL)
COMPRESSED_TENSORS = OptionalPackage(
    "compressed-tensors", "compressed_tensors", ("compressed-tensors",), INSTALL
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local folders only: never try the hub
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers as module
    except ImportError as exc:
        raise MissingDependencyError(
            f"Python package 'transformers' is not installed: {exc}", hint=INSTALL
        ) from exc
    module.utils.logging.disable_progress_bar()
    return module


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """compressed-tensors and llmcompressor draw a tqdm bar per (de)compression, dispatch and calibration
    layer, most with an explicit `disable=` that TQDM_DISABLE cannot override: disable every bar inside
    the block (with --verbose, leave them)."""
    if verbose():
        yield
        return
    import tqdm

    original = tqdm.tqdm.__init__

    def silent(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, "disable": True})

    tqdm.tqdm.__init__ = silent  # the base class: tqdm.auto's and `from tqdm import tqdm` alike
    try:
        yield
    finally:
        tqdm.tqdm.__init__ = original


def compressed_tensors():
    try:
        import compressed_tensors as module
    except ImportError as exc:
        raise MissingDependencyError(
            f"Python package 'compressed-tensors' is not installed (it writes and reads the checkpoints "
            f"vLLM loads): {exc}",
            hint=INSTALL,
        ) from exc
    return module


def check_folder(folder: Path, *, weights: bool) -> None:
    """Exit 2 naming model.source when the folder lacks config.json, a tokenizer or (if needed) weights."""
    if not (folder / "config.json").is_file():
        raise UserInputError(
            f"model.source: '{folder}' has no config.json (not a Hugging Face checkpoint folder)"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserInputError(
            f"model.source: '{folder}' has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])})"
        )
    if weights and not any(p.suffix in WEIGHT_SUFFIXES for p in folder.iterdir()):
        raise UserInputError(
            f"model.source: '{folder}' has no weights (*.safetensors)",
            hint="set model.random_weights: {seed: 0} to build it from config.json with random weights",
        )


def load_model(folder: Path, seed: int | None) -> Any:
    """The FP32 causal LM in eval mode: from the folder's weights, or built from its config with
    seeded random weights."""
    import torch

    hf = transformers()
    try:
        if seed is None:
            model = hf.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
        else:
            config = hf.AutoConfig.from_pretrained(str(folder))
            torch.manual_seed(seed)
            model = hf.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise UserInputError(f"model.source: transformers cannot load '{folder}': {exc}") from exc
    return model.eval()


def load_tokenizer(folder: Path) -> Any:
    try:
        return transformers().AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, KeyError) as exc:
        raise UserInputError(f"model.source: cannot load the tokenizer of '{folder}': {exc}") from exc


def save_plain(model: Any, source: Path, folder: Path) -> None:
    """The FP32 model as safetensors, with the source's tokenizer files beside it."""
    model.save_pretrained(str(folder))
    _copy_tokenizer(source, folder)


def save_compressed(model: Any, source: Path, folder: Path) -> dict[str, Any]:
    """Compress the quantized modules in place and save; config.json gets the `quantization_config`
    vLLM reads (quant_method compressed-tensors). Returns that config."""
    compressed_tensors()
    if getattr(model.save_pretrained, "_overridden", False):
        # llmcompressor's oneshot wrapped save_pretrained: its own path compresses, writes the config
        # vLLM expects and recipe.yaml, and undoes the offloading it set up for calibration.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Attempting to save a model with offloaded modules")
            model.save_pretrained(str(folder), save_compressed=True)
    else:
        from compressed_tensors.compressors import ModelCompressor

        compressor = ModelCompressor.from_pretrained_model(model)
        compressor.compress_model(model)
        model.save_pretrained(str(folder))
        compressor.update_config(str(folder))
    _copy_tokenizer(source, folder)
    return read_quantization_config(folder)


def _copy_tokenizer(source: Path, folder: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            (folder / name).write_bytes((source / name).read_bytes())


def read_quantization_config(folder: Path) -> dict[str, Any]:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    quant = config.get("quantization_config")
    if not isinstance(quant, dict) or quant.get("quant_method") != "compressed-tensors":
        raise RuntimeError(f"{folder}/config.json has no compressed-tensors quantization_config")
    return quant


def weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)


def load_saved(folder: Path) -> Any:
    """A saved checkpoint read back through transformers (compressed-tensors decompresses it): what
    was written, not the model in memory."""
    import torch

    hf = transformers()
    compressed_tensors()
    model = hf.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    return model.eval()


def scheme_summary(quant: dict[str, Any]) -> dict[str, Any]:
    """What the saved quantization_config says: format, weight/activation bits, ignored modules."""
    groups = quant.get("config_groups") or {}
    first = next(iter(groups.values()), {})
    weights, acts = first.get("weights") or {}, first.get("input_activations") or {}
    return {
        "format": quant.get("format"),
        "weights": f"{weights.get('type')}{weights.get('num_bits')} {weights.get('strategy')}"
        if weights
        else None,
        "activations": (
            f"{acts.get('type')}{acts.get('num_bits')} {acts.get('strategy')}"
            + (" dynamic" if acts.get("dynamic") else "")
            if acts
            else None
        ),
        "ignore": quant.get("ignore"),
        "compressed_tensors_version": quant.get("version"),
    }
