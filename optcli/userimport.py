"""Resolve user code references: 'pkg.module:attr' or 'path/to/file.py:attr'."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import sys
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optcli.errors import UserInputError

_MESSAGE_CHARS = 400  # an exception's text in a one-paragraph error; the rest is in --debug's traceback


def resolve_callable(ref: str, *, base_dir: Path, field: str) -> Callable[..., Any]:
    """Import the object `ref` names and check it is callable; errors name the recipe field."""
    module_part, sep, attr = ref.rpartition(":")
    if not sep or not module_part or not attr:
        raise UserInputError(f"{field}: '{ref}' is not 'pkg.module:function' or 'path/to/file.py:function'")
    module = (
        _import_file(module_part, base_dir, field)
        if module_part.endswith(".py")
        else _import_module(module_part, base_dir, field)
    )
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_"))[:15]
            raise UserInputError(
                f"{field}: '{module_part}' has no attribute '{attr}' (it defines: {', '.join(public)})"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserInputError(f"{field}: '{ref}' is a {type(obj).__name__}, not a callable")
    return obj


def _import_module(name: str, base_dir: Path, field: str):
    # Model repos keep their code beside the recipe; make it importable like `python -m` would.
    for path in (str(base_dir), str(Path.cwd())):
        if path not in sys.path:
            sys.path.append(path)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise UserInputError(f"{field}: cannot import module '{name}': {exc}") from exc
        raise UserInputError(
            f"{field}: importing '{name}' failed because it imports the missing module '{exc.name}'",
            hint=f"pip install {exc.name}",
        ) from exc
    except ImportError as exc:
        raise UserInputError(f"{field}: cannot import module '{name}': {exc}") from exc


def _import_file(path_text: str, base_dir: Path, field: str):
    path = Path(path_text)
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise UserInputError(f"{field}: file '{path}' does not exist")
    module_name = module_name_for(path)
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UserInputError(f"{field}: cannot load '{path}' as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))  # let the file import its siblings
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        del sys.modules[module_name]
        raise UserInputError(
            f"{field}: '{path}' imports the missing module '{exc.name}'",
            hint=f"pip install {exc.name}",
        ) from exc
    except Exception as exc:
        del sys.modules[module_name]
        where = f" at line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        raise UserInputError(
            f"{field}: importing '{path}' failed{where}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        sys.path.remove(str(path.parent))
    return module


def module_name_for(path: Path) -> str:
    """A name for the module imported from `path`: unique per file, and the same in every process.

    The name reaches the exported ONNX (node metadata names the module classes), so it must not
    depend on Python's per-process salted hash().
    """
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"optcli_user_{stem}_{digest}"


def describe_exception(exc: BaseException, base_dir: Path | None = None) -> str:
    """'ValueError: bad record (at data.py:12)': type, text on one line, where the user's code raised it."""
    text = " ".join(str(exc).split())
    if len(text) > _MESSAGE_CHARS:
        text = text[:_MESSAGE_CHARS] + " ..."
    where = user_frame(exc, base_dir)
    return f"{type(exc).__name__}: {text}" + (f" (at {where})" if where else "")


def user_frame(exc: BaseException, base_dir: Path | None = None) -> str | None:
    """'file.py:line' of the innermost traceback frame in the user's own code (not optcli, the
    standard library or installed packages), or None."""
    paths = sysconfig.get_paths()
    library = {str(Path(paths[k]).resolve()) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    library.add(str(Path(__file__).resolve().parent))
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        resolved = str(Path(frame.filename).resolve())
        if frame.filename.startswith("<") or any(resolved.startswith(p) for p in library):
            continue
        found = (Path(resolved), frame.lineno)
    if found is None:
        return None
    path, line = found
    if base_dir is not None:
        with contextlib.suppress(ValueError):  # outside the recipe's folder: keep it absolute
            path = path.relative_to(base_dir.resolve())
    return f"{path}:{line}"
