"""Option types shared by optcli's commands (typer-specific code stays in the CLI modules)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperOption

# `-h` beside `--help` on every command (sub-apps inherit it through their click contexts).
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


def _flag_shows_no_type(display_type_rich: Any) -> Any:
    """Typer's rich help prints `<bool>` after every flag (its plain help does not): a flag takes no
    value, so show none."""

    def display(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag or self.count else display_type_rich(self, ctx)

    return display


if not getattr(TyperOption.display_type_rich, "_optcli", False):
    TyperOption.display_type_rich = _flag_shows_no_type(TyperOption.display_type_rich)  # type: ignore[method-assign]
    TyperOption.display_type_rich._optcli = True  # type: ignore[attr-defined]


class Target(str, enum.Enum):
    """`--target`: the recipe's `target` values (help lists them; anything else is exit 2)."""

    cpu = "cpu"
    auto = "auto"
    gpu = "gpu"


RecipePath = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="<dotted.path=value>",
        help="Override a recipe field: dotted.path=value, repeatable. The value is read as YAML; one "
        "that is not valid YAML is taken as the string it is (so gates need no extra quotes: "
        "--set validate.gates.cosine='>= 0.98'). E.g. --set quantization.precision=fp8 "
        "--set build.0.threads=4",
    ),
]

WaitOption = Annotated[
    bool,
    typer.Option("--wait", help="If another optcli run holds the run folder, wait for it instead of exit 2."),
]

NoCacheOption = Annotated[
    bool,
    typer.Option(
        "--no-cache",
        help="Recompute every stage instead of reusing cached results (cache: $OPTCLI_CACHE_DIR, "
        "default ~/.cache/optcli; see `optcli cache`).",
    ),
]

JsonOption = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one summary JSON object on stdout (verdict, exit_code, report, artifact, "
        "failed_gates, error); everything else goes to stderr.",
    ),
]
