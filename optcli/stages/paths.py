"""Do the files a recipe names exist? Checked without importing or reading them, so `recipe
validate` and `run --dry-run` stay fast and run no user code."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
from pathlib import Path
from typing import Any

from optcli.calibration import SourceContext
from optcli.errors import OptcliError, UserInputError
from optcli.hf_source import hf_folder, is_hf
from optcli.recipe.models import SERIALIZED_MODEL_SUFFIXES
from optcli.specs import ShapeResolver


def missing_paths(recipe: Any) -> list[OptcliError]:
    """A problem (its message starts with the field) for each file, glob or module the recipe names
    that cannot be found."""
    problems: list[OptcliError] = []
    model = recipe.model

    def check(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except OptcliError as exc:
            problems.append(exc)

    check(_model_source, model.source, recipe.base_dir)
    if model.checkpoint:
        check(_file, model.checkpoint, recipe.base_dir, "model.checkpoint")
    for field, options in data_sources(recipe):
        check(_data_source, options, SourceContext(_resolver(recipe), recipe.base_dir, field))
    return problems


def data_sources(recipe: Any) -> list[tuple[str, Any]]:
    """The data sources the run will open: calibration when quantizing with calibration, validation
    when validating or when accuracy recovery measures on it."""
    found = []
    quantization = recipe.quantization
    if quantization is not None and quantization.precision in ("int8", "fp8"):
        found.append(("quantization.calibration.data", quantization.calibration.data))
    recovers = quantization is not None and quantization.accuracy is not None
    if recipe.validate_.enabled or recovers:
        found.append(("validate.data", recipe.validate_.data))
    return found


def _resolver(recipe: Any) -> ShapeResolver:
    model = recipe.model
    return ShapeResolver(model.inputs, model.dims, model.batch_dim)


def _data_source(options: Any, ctx: SourceContext) -> None:
    # The same functions the sources open their files with, so the messages match a real run's.
    if options.type == "files":
        from optcli.calibration.files import resolve_paths

        resolve_paths(options, ctx)
    elif options.type == "images":
        from optcli.calibration.images import image_files

        image_files(options, ctx)
    elif options.type == "callable":
        _callable_ref(options.callable, ctx.base_dir, f"{ctx.field}.callable")


def _model_source(source: str, base_dir: Path) -> None:
    if is_hf(source):
        hf_folder(source, base_dir)
    elif source.endswith(SERIALIZED_MODEL_SUFFIXES) and ":" not in source:
        _file(source, base_dir, "model.source")
    else:
        _callable_ref(source, base_dir, "model.source")


def _callable_ref(ref: str, base_dir: Path, field: str) -> None:
    module, sep, attr = ref.rpartition(":")
    if not sep or not module or not attr:
        raise UserInputError(f"{field}: '{ref}' is not 'pkg.module:function' or 'path/to/file.py:function'")
    if module.endswith(".py"):
        _file(module, base_dir, field)
    else:
        _module(module, base_dir, field)


def _file(path_text: str, base_dir: Path, field: str) -> None:
    path = Path(path_text)
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        where = "" if Path(path_text).is_absolute() else " (paths are relative to the recipe's folder)"
        raise UserInputError(f"{field}: file '{path}' does not exist{where}")


def _module(name: str, base_dir: Path, field: str) -> None:
    """Only the top-level package is looked up: finding a submodule would import its parents."""
    top = name.split(".")[0]
    try:
        found = importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = True  # importable in some unusual way; loading the model will tell
    if not found:
        # The run also imports from the recipe's folder and the current directory.
        found = importlib.machinery.PathFinder.find_spec(top, [str(base_dir), os.getcwd()]) is not None
    if not found:
        raise UserInputError(
            f"{field}: cannot import module '{name}': no '{top}' on the Python path, in the recipe's "
            f"folder ({base_dir}) or in the current directory",
            hint=f"install the package that provides '{top}', or give a file: 'path/to/file.py:function'",
        )
