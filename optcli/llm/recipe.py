"""The `pipeline: llm` recipe: a Hugging Face causal LM quantized into a checkpoint vLLM loads.

model -> quantize (one checkpoint folder per scheme) -> validate (perplexity, agreement, KL on
held-out text, the saved checkpoint loaded back) -> benchmark (tokens/s, TTFT) -> report
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from optcli.gates import check_gate_names
from optcli.llm.text_data import TextSource
from optcli.recipe.models import SCHEMA_VERSION, ReportSection
from optcli.strict import LocatedModel, StrictModel

SCHEMES = ("FP8_DYNAMIC", "W8A8", "W4A16")
Scheme = Literal["FP8_DYNAMIC", "W8A8", "W4A16"]
LLM_METRICS = {
    "ppl_increase": "quantized perplexity / baseline perplexity - 1 on the validation text",
    "token_agreement": "fraction of validation tokens whose next-token top-1 matches the baseline's",
    "kl": "mean KL(baseline || quantized) of the next-token distributions, nats per token",
}


class RandomWeights(StrictModel):
    seed: int = Field(0, description="torch.manual_seed before the model is built from config.json.")


class LlmModelSection(StrictModel):
    """The causal LM: a local Hugging Face folder (config.json, tokenizer, safetensors)."""

    source: str = Field(
        description="'hf:path/to/folder': a local Hugging Face checkpoint folder (relative to the "
        "recipe); nothing is downloaded.",
        pattern=r"^hf:.+",
    )
    random_weights: RandomWeights | None = Field(
        None,
        description="Build the model from config.json with seeded random weights instead of loading "
        "any (the folder then needs only config.json and the tokenizer): examples and tests.",
    )

    def folder(self, base_dir: Path) -> Path:
        path = Path(self.source[len("hf:") :]).expanduser()
        return path if path.is_absolute() else base_dir / path


class CalibrationSection(StrictModel):
    data: TextSource = Field(description="Calibration text: type file, jsonl or callable.")
    samples: int = Field(32, ge=1, description="Token windows of seq_len to calibrate on (at most).")
    seq_len: int = Field(128, ge=8, description="Tokens per calibration window.")


class LlmQuantizationSection(StrictModel):
    """How the checkpoint is quantized; every scheme listed gives one checkpoint folder."""

    tool: Literal["compressed-tensors", "llmcompressor"] = Field(
        "compressed-tensors",
        description="compressed-tensors: weights rounded to nearest from their own ranges (data-free, "
        "the schemes' dynamic activations need no calibration); llmcompressor: its oneshot API on the "
        "calibration text, GPTQ for W8A8/W4A16 (an environment of its own: scripts/llm_venv.sh).",
    )
    scheme: list[Scheme] = Field(
        default_factory=lambda: ["W8A8"],
        min_length=1,
        description="One scheme or a list: FP8_DYNAMIC (FP8 weights per channel, FP8 per-token "
        "dynamic activations), W8A8 (INT8 per channel, INT8 per-token dynamic), W4A16 (INT4 "
        "weights, groups of 128).",
    )
    calibration: CalibrationSection | None = Field(
        None, description="Calibration text (used by llmcompressor; checked disjoint from validation)."
    )
    ignore: list[str] = Field(
        default_factory=lambda: ["lm_head"],
        description="Modules left unquantized: names or 're:<regex>' (compressed-tensors syntax).",
    )

    @field_validator("scheme", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("scheme")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"schemes must be unique, got {value}")
        return value


class LlmValidateSection(StrictModel):
    """Baseline vs each saved checkpoint on held-out text."""

    enabled: bool = Field(True, description="Run validation.")
    data: TextSource = Field(description="Validation text; must not overlap the calibration text.")
    samples: int = Field(16, ge=1, description="Token windows of seq_len to validate on (at most).")
    seq_len: int = Field(128, ge=8, description="Tokens per validation window.")
    gates: dict[str, str] = Field(
        default_factory=dict,
        description="Metric -> threshold for every scheme, e.g. {token_agreement: '>= 0.9'}. Metrics: "
        + ", ".join(LLM_METRICS),
    )

    _check_gates = field_validator("gates")(lambda cls, v: check_gate_names(v, LLM_METRICS))


class LlmBenchmarkSection(StrictModel):
    """Prefill/decode tokens per second and time to first token, baseline and every scheme."""

    enabled: bool = Field(True, description="Run the benchmark.")
    engine: Literal["transformers", "vllm"] = Field(
        "transformers",
        description="transformers: in this process on CPU; vllm: vLLM in the interpreter `python` "
        "(its own environment), started as a subprocess.",
    )
    python: str | None = Field(
        None, description="engine vllm: the Python of an environment with vLLM (e.g. venv/bin/python)."
    )
    timeout_s: float = Field(600, gt=0, description="engine vllm: the subprocess is killed after this.")
    prompt_tokens: int = Field(64, ge=1, description="Prompt length (tokens) for prefill and TTFT.")
    new_tokens: int = Field(32, ge=1, description="Greedy tokens generated for the decode rate.")
    iterations: int = Field(3, ge=1, description="Timed generations per model (the median is reported).")
    warmup: int = Field(1, ge=0, description="Untimed generations first.")


class LlmRecipe(LocatedModel):
    """An optcli LLM recipe: one causal LM, quantized checkpoints, perplexity gates, tokens/s."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Recipe format version.")
    pipeline: Literal["llm"] = Field(description="The LLM pipeline (a Hugging Face checkpoint, not ONNX).")
    name: str = Field(
        description="Short name; default run folder is runs/<name>.", pattern=r"^[A-Za-z0-9_.-]+$"
    )
    description: str = Field("", description="Free text shown in reports.")
    model: LlmModelSection
    quantization: LlmQuantizationSection = Field(default_factory=LlmQuantizationSection)
    validate_: LlmValidateSection | None = Field(None, alias="validate")
    threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads for every stage (quantize, validate, benchmark). Default: "
        "torch's (one per core; on a busy machine fewer is faster).",
    )
    benchmark: LlmBenchmarkSection = Field(default_factory=LlmBenchmarkSection)
    report: ReportSection = Field(default_factory=ReportSection)

    model_config = ConfigDict(**StrictModel.model_config, populate_by_name=True)

    @model_validator(mode="after")
    def _calibration_for_llmcompressor(self) -> LlmRecipe:
        if self.quantization.tool == "llmcompressor" and self.quantization.calibration is None:
            raise ValueError("quantization.calibration: llmcompressor calibrates on text; give data")
        return self

    def plan_steps(self) -> list[str]:
        """The stage list (for --dry-run)."""
        tool = self.quantization.tool
        steps = ["load"] + [f"quantize {s} ({tool})" for s in self.quantization.scheme]
        if self.validate_ is not None and self.validate_.enabled:
            steps.append("validate")
        if self.benchmark.enabled:
            steps.append(f"benchmark ({self.benchmark.engine})")
        return steps
