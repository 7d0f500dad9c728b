"""Text for calibration and validation: a text file, a jsonl file or a callable yielding strings,
tokenized with the model's tokenizer into fixed-length windows.

The texts of a source are joined (EOS between them) and cut into `seq_len` windows, so every
window is full and windows are comparable across runs. A source's fingerprint is a digest of the
texts themselves, which covers files and callables alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from optcli.errors import OptcliError, UserInputError
from optcli.strict import StrictModel
from optcli.userimport import describe_exception, resolve_callable


class TextFileSource(StrictModel):
    type: Literal["file"] = "file"
    path: str = Field(description="UTF-8 text file (relative to the recipe).")
    split: Literal["lines", "paragraphs", "whole"] = Field(
        "lines", description="One text per line, per blank-line separated paragraph, or the whole file."
    )


class JsonlSource(StrictModel):
    type: Literal["jsonl"] = "jsonl"
    path: str = Field(description="JSON Lines file, one object per line (relative to the recipe).")
    field: str = Field("text", description="The key holding the text.")


class TextCallableSource(StrictModel):
    type: Literal["callable"] = "callable"
    callable: str = Field(description="'pkg.module:function' or 'file.py:function' returning strings.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the function.")


TextSource = Annotated[TextFileSource | JsonlSource | TextCallableSource, Field(discriminator="type")]


def read_texts(source: Any, base_dir: Path, field: str) -> list[str]:
    """The source's non-empty texts, in order; errors name the recipe field (exit 2)."""
    if isinstance(source, TextCallableSource):
        texts = _call(source, base_dir, field)
    else:
        path = Path(source.path)
        path = path if path.is_absolute() else base_dir / path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserInputError(f"{field}.path: cannot read '{path}': {exc}") from exc
        texts = (
            _jsonl(text, path, source.field, field)
            if isinstance(source, JsonlSource)
            else _split(text, source)
        )
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise UserInputError(f"{field}: the source gave no text")
    return texts


def _split(text: str, source: TextFileSource) -> list[str]:
    if source.split == "whole":
        return [text]
    if source.split == "paragraphs":
        return [p.strip() for p in text.split("\n\n")]
    return [line.strip() for line in text.splitlines()]


def _jsonl(text: str, path: Path, key: str, field: str) -> list[str]:
    texts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise UserInputError(f"{field}.path: {path}:{number}: not JSON: {exc}") from exc
        value = record.get(key) if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise UserInputError(f"{field}.field: {path}:{number} has no string under '{key}'")
        texts.append(value)
    return texts


def _call(source: TextCallableSource, base_dir: Path, field: str) -> list[str]:
    fn = resolve_callable(source.callable, base_dir=base_dir, field=f"{field}.callable")
    try:
        values = list(_iterable(fn(**source.kwargs), source, field))
    except (OptcliError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the user's code: whatever it raises is theirs to fix
        why = describe_exception(exc, base_dir)
        raise UserInputError(f"{field}.callable: '{source.callable}' raised {why}") from exc
    bad = next((v for v in values if not isinstance(v, str)), None)
    if bad is not None:
        raise UserInputError(
            f"{field}.callable: '{source.callable}' yielded a {type(bad).__name__}, expected strings"
        )
    return values


def _iterable(value: Any, source: TextCallableSource, field: str) -> Iterable[Any]:
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise UserInputError(
            f"{field}.callable: '{source.callable}' returned a {type(value).__name__}, expected an "
            "iterable of strings (a list or a generator)"
        )
    return value


def texts_digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode() + b"\0")
    return digest.hexdigest()


def token_windows(texts: list[str], tokenizer: Any, seq_len: int, samples: int, field: str):
    """int64 tensor [n, seq_len] with n = min(samples, what the text fills); exit 2 if not one window."""
    import torch

    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for text in texts:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"]
        if eos is not None:
            ids.append(eos)
        if len(ids) >= seq_len * samples:
            break
    count = min(samples, len(ids) // seq_len)
    if count == 0:
        raise UserInputError(
            f"{field}: the text gives {len(ids)} tokens, fewer than one window of seq_len {seq_len}",
            hint="add text or lower seq_len",
        )
    return torch.tensor(ids[: count * seq_len], dtype=torch.int64).view(count, seq_len)


def check_disjoint(calibration: list[str], validation: list[str], cal_windows: Any, val_windows: Any) -> None:
    """Exit 2 when validation text was calibrated on: a text in both sources, or a window in both."""
    shared = set(calibration) & set(validation)
    if shared:
        example = next(iter(shared))
        raise UserInputError(
            f"validate.data: {len(shared)} text(s) also in quantization.calibration.data, e.g. "
            f"{example[:80]!r}; validation must be held out",
            hint="use disjoint files, or different splits of one source",
        )
    seen = {tuple(w.tolist()) for w in cal_windows}
    repeated = sum(tuple(w.tolist()) in seen for w in val_windows)
    if repeated:
        raise UserInputError(
            f"validate.data: {repeated} token window(s) equal calibration windows; validation must be "
            "held out",
            hint="use disjoint files, or different splits of one source",
        )
