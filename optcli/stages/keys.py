"""The parts of cache keys that describe inputs outside the ONNX files: the PyTorch model's code and
weights, and the installed packages."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from optcli.cache import sha256_file
from optcli.hf_source import hf_files, is_hf


def model_fingerprint(model, base_dir: Path) -> dict[str, Any]:
    """What decides the exported graph besides the export settings: the source (its code file and
    the .py files beside it, which it may import), the checkpoint, kwargs, inputs and dims."""
    parts: dict[str, Any] = {
        "section": model.model_dump(mode="json", by_alias=True),
        "code": {str(p): sha256_file(p) for p in _code_files(model.source, base_dir)},
    }
    if getattr(model, "checkpoint", None):
        checkpoint = Path(model.checkpoint)
        checkpoint = checkpoint if checkpoint.is_absolute() else base_dir / checkpoint
        parts["checkpoint"] = sha256_file(checkpoint) if checkpoint.is_file() else "missing"
    return parts


def _code_files(source: str, base_dir: Path) -> list[Path]:
    if is_hf(source):  # a checkpoint folder: its config and weights decide the model
        return hf_files(source, base_dir)
    module_part = source.rpartition(":")[0] if ":" in source else source
    if module_part.endswith((".py", ".pt", ".ts", ".pt2", ".pth")):
        path = Path(module_part)
        origin = path if path.is_absolute() else base_dir / path
    else:
        origin = _module_origin(module_part, base_dir)
    if origin is None or not origin.is_file():
        return []
    if origin.suffix != ".py":
        return [origin]
    return sorted(origin.parent.glob("*.py"))


def _module_origin(name: str, base_dir: Path) -> Path | None:
    added = [p for p in (str(base_dir), str(Path.cwd())) if p not in sys.path]
    sys.path.extend(added)  # where the run itself looks for the recipe's modules
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    finally:
        for path in added:
            sys.path.remove(path)
    return Path(spec.origin) if spec is not None and spec.origin else None
