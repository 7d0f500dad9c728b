"""`optcli cache ls|prune`: look at and trim the stage cache (OPTCLI_CACHE_DIR, default ~/.cache/optcli)."""

from __future__ import annotations

import re
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from optcli.cache import StageCache
from optcli.console import console
from optcli.errors import UserInputError

cache_app = typer.Typer(
    help="Stage results cached across runs (exports, passes, quantized models, validation metrics). "
    "Location: $OPTCLI_CACHE_DIR, default ~/.cache/optcli; `optcli run --no-cache` bypasses it.",
    no_args_is_help=True,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '45s' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if not match:
        raise UserInputError(f"--older-than: '{text}' is not an age like 30d, 12h, 90m or 45s")
    return float(match.group(1)) * _UNITS[match.group(2)]


@cache_app.command("ls")
def cache_ls() -> None:
    """List cache entries: stage, key, size, age."""
    cache = StageCache()
    table = Table("stage", "key", "size", "age", title=f"cache: {cache.root}")
    total = 0
    now = time.time()
    for entry in cache.entries():
        size = entry.size()
        total += size
        table.add_row(entry.stage, entry.key, _size(size), _age(now - entry.created))
    out = Console()  # the listing is the command's output: stdout, unlike messages
    out.print(table)
    out.print(f"total {_size(total)}")


@cache_app.command("prune")
def cache_prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Remove entries older than this: 30d, 12h, 90m, 45s.")
    ] = "0s",
) -> None:
    """Remove cache entries older than --older-than (default: all of them)."""
    cache = StageCache()
    removed, freed = cache.prune(parse_age(older_than))
    console.print(
        f"removed {removed} entr{'y' if removed == 1 else 'ies'} ({_size(freed)}) from {cache.root}"
    )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
