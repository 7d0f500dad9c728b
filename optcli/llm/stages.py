"""The LLM pipeline's stages: each a function of its inputs and the StageContext, cached by content
(quantize: the checkpoint folder's files; validate: the metrics), returning plain results."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from optcli import interrupts
from optcli.artifacts import Artifact
from optcli.cache import make_key, sha256_file
from optcli.llm import checkpoint, evaluate
from optcli.llm.quantize import method, quantize
from optcli.stages.context import StageContext

LIBRARIES = ("transformers", "compressed-tensors", "llmcompressor", "safetensors", "tokenizers")


def library_versions() -> dict[str, str]:
    """The libraries that decide a checkpoint's bytes and its metrics, beside the run's own versions."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def folder_digest(folder: Path, seed: int | None) -> dict[str, Any]:
    """What decides the baseline model: every file of its folder (config, tokenizer, weights) and the seed."""
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
    return {"files": files, "random_weights_seed": seed}


@contextmanager
def staged_folder(ctx: StageContext, name: str) -> Iterator[Path]:
    """A folder written under a temp name and renamed into place whole (replacing an older one)."""
    with ctx.workspace.staged(name) as tmp:
        tmp.mkdir()
        yield tmp
        with interrupts.deferred():
            shutil.rmtree(ctx.workspace.path(name), ignore_errors=True)


def folder_artifact(name: str, folder: Path, precision: str, producer: str, key: str | None) -> Artifact:
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    return Artifact(name, folder / "config.json", "hf_checkpoint", precision, producer, key, file_names=files)


@dataclass
class Checkpoint:
    scheme: str
    artifact: Artifact
    record: dict[str, Any]  # the report's entry: bytes, size ratio, seconds, peak RSS, config summary

    @property
    def folder(self) -> Path:
        return self.artifact.path.parent


def quantize_stage(
    ctx: StageContext,
    scheme: str,
    settings: Any,
    fresh_model: Callable[[], Any],
    source: Path,
    identity: dict[str, Any],
    calibration: Any | None,
) -> Checkpoint:
    """One scheme's checkpoint folder `<run>/<scheme>/`, from the cache or quantized now."""
    how = method(settings.tool, scheme)
    key = make_key(
        "llm-quantize",
        {**identity, "scheme": scheme, "tool": settings.tool, "method": how, "ignore": settings.ignore},
    )
    entry = ctx.cache.get("llm-quantize", key)
    with ctx.stage(f"quantize {scheme}") as record:
        with staged_folder(ctx, scheme) as tmp:
            if entry is not None:
                for name in entry.files:
                    _link_or_copy(entry.path(name), tmp / name)
                meta = entry.meta
            else:
                model = fresh_model()
                done = quantize(model, scheme, settings.tool, settings.ignore, calibration)
                config = checkpoint.save_compressed(model, source, tmp)
                meta = {
                    "method": how,
                    "quantize_seconds": done.seconds,
                    "peak_rss_mb": done.peak_rss_mb,
                    "quantized_modules": done.quantized_modules,
                    "quantization_config": checkpoint.scheme_summary(config),
                }
                ctx.cache.put("llm-quantize", key, {p.name: p for p in tmp.iterdir()}, meta)
        folder = ctx.workspace.path(scheme)
        artifact = folder_artifact(f"checkpoint_{scheme}", folder, scheme.lower(), "quantize", key)
        record.artifact = str(folder)
        record.details = {"cached": entry is not None, "cache_key": key}
    return Checkpoint(
        scheme, artifact, {**meta, "cached": entry is not None, "bytes": checkpoint.weight_bytes(folder)}
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # run-folder files are only ever replaced, never edited in place
    except OSError:
        shutil.copyfile(src, dst)


@dataclass
class Baseline:
    """The baseline's next-token log-probs on the validation windows, computed on first use."""

    model: Callable[[], Any]
    windows: Any
    _logits: list[Any] = field(default_factory=list)

    def logits(self) -> evaluate.Logits:
        if not self._logits:
            self._logits.append(evaluate.logits_of(self.model(), self.windows))
        return self._logits[0]


def validate_stage(
    ctx: StageContext, saved: Checkpoint, baseline: Baseline, identity: dict[str, Any]
) -> dict[str, float]:
    """Metrics of the checkpoint loaded back from its folder (what was saved) vs the baseline."""
    key = make_key("llm-validate", {**identity, "checkpoint": saved.artifact.sha256})
    entry = ctx.cache.get("llm-validate", key)
    with ctx.stage(f"validate {saved.scheme}") as record:
        if entry is not None:
            metrics = entry.meta["metrics"]
        else:
            reference = baseline.logits()
            base_ppl = evaluate.perplexity(reference)
            loaded = checkpoint.load_saved(saved.folder)
            metrics = {
                "baseline_perplexity": base_ppl,
                **evaluate.compare(reference, evaluate.logits_of(loaded, baseline.windows), base_ppl),
            }
            del loaded
            ctx.cache.put("llm-validate", key, {}, {"metrics": metrics})
        record.details = {
            "cached": entry is not None,
            "cache_key": key,
            "windows": len(baseline.windows),
        }
    return metrics
