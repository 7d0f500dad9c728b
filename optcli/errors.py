"""One error hierarchy; the CLI maps each class to an exit code (see DESIGN.md)."""

from __future__ import annotations


class OptcliError(Exception):
    """Base class: a failure with a message meant for the user, not a traceback."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class UserInputError(OptcliError):
    """Bad recipe, model, data or flags: something the user can fix (exit 2)."""

    exit_code = 2


class RecipeError(UserInputError):
    """A recipe problem, located by file, line and dotted field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = file or "<recipe>"
        if line is not None:
            where += f":{line}"
        prefix = f"{where}: " + (f"field '{field}': " if field else "")
        super().__init__(prefix + message, hint=hint)
        self.file, self.line, self.field = file, line, field


class MissingDependencyError(OptcliError):
    """An optional package, backend or device the recipe needs is not available (exit 3)."""

    exit_code = 3


class StageError(OptcliError):
    """A pipeline stage failed on valid input (e.g. the exporter rejected the model)."""

    exit_code = 2


def require(module: str, *, extra: str | None = None, package: str | None = None, purpose: str = ""):
    """Import an optional dependency or raise MissingDependencyError with the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pip_name = package or module
        install = f"pip install 'optcli[{extra}]'" if extra else f"pip install {pip_name}"
        why = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(
            f"Python package '{pip_name}' is not installed{why}: {exc}", hint=install
        ) from exc
