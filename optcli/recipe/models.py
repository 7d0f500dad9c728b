"""The recipe: one pydantic model per section. Field descriptions are the docs (JSON Schema, --help)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from optcli.backends import EngineEntry
from optcli.backends.onnxruntime import OnnxRuntimeConfig
from optcli.calibration import DataSource
from optcli.calibration.synthetic import SyntheticSource
from optcli.gates import BENCHMARK_METRICS, VALIDATION_METRICS, check_gate_names
from optcli.passes import PASSES, PassConfig
from optcli.quantization import QuantizationSettings
from optcli.recipe import crossfield
from optcli.regression import RegressionSection
from optcli.slo import SloSettings
from optcli.specs import DimRange, InputSpec
from optcli.strict import LocatedModel, StrictModel

SCHEMA_VERSION = 1
SERIALIZED_MODEL_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".torchscript")  # model.source files, no factory


class ModelSection(StrictModel):
    """The PyTorch model and the inputs its forward() takes."""

    source: str = Field(
        description="'pkg.module:factory', 'path/to/file.py:factory' (returns an nn.Module), a "
        "TorchScript file (.pt/.ts), a torch.export file (.pt2), or 'hf:path/to/folder' (a local Hugging "
        "Face checkpoint: model.kwargs task/output pick the head and the output). Paths are relative to "
        "the recipe."
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the factory.")
    checkpoint: str | None = Field(
        None,
        description="state_dict file loaded with torch.load(weights_only=True) after construction.",
    )
    inputs: list[InputSpec] = Field(min_length=1, description="forward() inputs, in order.")
    dims: dict[str, DimRange] = Field(
        default_factory=dict,
        description="Ranges of the named dynamic dims used in inputs. The batch dim defaults to "
        "{min: 1, opt: 1, max: 64}; every other named dim must be listed.",
    )
    batch_dim: str = Field("batch", description="Name of the dim that data batches and batch_sizes vary.")
    outputs: list[str] | None = Field(
        None,
        description="Names for the flattened outputs (tuple/dict outputs). Default: output_0, output_1, ...",
    )

    @model_validator(mode="after")
    def _dims_declared(self) -> ModelSection:
        names = [d for spec in self.inputs for d in spec.dynamic_dims]
        if self.batch_dim in names and self.batch_dim not in self.dims:
            self.dims = {self.batch_dim: DimRange(), **self.dims}
        missing = sorted({d for d in names if d not in self.dims})
        if missing:
            raise ValueError(f"dynamic dim(s) {missing} used in inputs need a range in model.dims")
        input_names = [spec.name for spec in self.inputs]
        if len(set(input_names)) != len(input_names):
            raise ValueError(f"input names must be unique, got {input_names}")
        for spec in self.inputs:
            if spec.shape[0] != self.batch_dim:
                raise ValueError(
                    f"input '{spec.name}': the first dim must be the batch dim '{self.batch_dim}' "
                    f"(data is fed in batches), got {spec.shape}"
                )
        return self


class ExportSection(StrictModel):
    """PyTorch -> ONNX."""

    exporter: Literal["dynamo", "torchscript"] = Field(
        "dynamo",
        description="torch.onnx.export(dynamo=True), or the legacy TorchScript exporter as a fallback.",
    )
    opset: int = Field(18, ge=13, le=23, description="ONNX opset version.")
    external_data: bool | None = Field(
        None,
        description="Store weights in a .data file beside the .onnx. Default: only above ~1.8 GB.",
    )
    verify: bool = Field(
        True, description="Compare ONNX Runtime and PyTorch outputs on one batch after export."
    )
    min_cosine: float = Field(0.9999, description="Export verification: lowest cosine similarity per output.")


class ValidateSection(StrictModel):
    """Accuracy of each engine against the PyTorch baseline on data not used for calibration."""

    enabled: bool = Field(True, description="Run validation.")
    data: DataSource = Field(
        default_factory=lambda: SyntheticSource(seed=1_000_003),
        description="Validation batches; must differ from the calibration data.",
    )
    samples: int = Field(
        256,
        ge=1,
        description="How many samples to validate on. With quantization.accuracy, the ones after the "
        "quantization.accuracy.samples that recovery tunes on.",
    )
    batch_size: int = Field(32, ge=1, description="Samples per validation batch.")
    labels: str = Field("labels", description="Key of integer class labels in data batches (task accuracy).")
    class_output: int | str | None = Field(
        0,
        description="The output holding class scores [N, classes] for top-1 metrics: its index, or its "
        "name in model.outputs; null: none. Checked against the exported model's outputs.",
    )
    gates: dict[str, str] = Field(
        default_factory=dict,
        description="Metric -> threshold applied to every engine, e.g. {cosine: '>= 0.999', "
        "accuracy_drop: '<= 0.01'}. Metrics: " + ", ".join(VALIDATION_METRICS),
    )

    stop_early: bool = Field(
        True,
        description="Stop running an engine once a gate more samples cannot undo has failed (cosine_min, "
        "snr_db_min or max_abs past its threshold, NaN/Inf outputs); its metrics then cover the samples "
        "up to there, and the report says how many. false: every engine sees every sample (full metrics "
        "for a failing engine).",
    )
    prune_ratio: float | None = Field(
        1.5,
        gt=1.0,
        description="With a target and a latency benchmark: validate the candidates fastest first after "
        "a short latency probe, and leave out (unvalidated, unbenchmarked) those whose probe is at least "
        "this many times that of a candidate that passed; they could not be chosen. null: validate and "
        "benchmark every candidate.",
    )

    _check_gates = field_validator("gates")(lambda cls, v: check_gate_names(v, VALIDATION_METRICS))

    @field_validator("class_output")
    @classmethod
    def _not_negative(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError(f"must be an output index >= 0 or an output name, got {value}")
        return value


class BenchmarkSection(StrictModel):
    """Latency of the baseline and every engine per batch size, in interleaved rounds (mode slo: the
    throughput each reaches within a p99 budget)."""

    enabled: bool = Field(True, description="Run the benchmark.")
    mode: Literal["latency", "slo"] = Field(
        "latency",
        description="latency: time batch_sizes in rounds; slo: the largest batch and threads whose p99 "
        "meets slo.p99_ms, on validation samples (gates slo_throughput, slo_speedup).",
    )
    slo: SloSettings | None = Field(None, description="The latency budget and search of mode slo.")
    batch_sizes: list[int] = Field(
        default_factory=lambda: [1], min_length=1, description="Batch sizes to time."
    )
    warmup: int = Field(10, ge=0, description="Untimed runs per engine before measuring.")
    iterations: int = Field(
        100,
        ge=1,
        description="Timed runs per engine and batch size (upper bound), split over the rounds; a "
        "re-measurement times as many again.",
    )
    time_budget_s: float | None = Field(
        None,
        gt=0,
        description="Stop timing an engine/batch size after this many seconds (min 5 runs), shared "
        "over the rounds.",
    )
    min_time_s: float | None = Field(
        None,
        gt=0,
        description="Time every engine/batch size for at least this many seconds per measurement, "
        "with more runs than `iterations` when calls are fast: a 0.1 ms call timed 100 times spans "
        "10 ms, too short to average out a loaded machine. At most time_budget_s.",
    )
    rounds: int = Field(
        20,
        ge=1,
        description="Rounds per measurement: each times a slice of every engine's runs in turn, so "
        "background load hits all engines alike; the speedup is the median over rounds of each "
        "round's baseline/engine ratio.",
    )
    method: Literal["interleaved", "sequential"] = Field(
        "interleaved",
        description="interleaved: round robin over the engines in every round; sequential: each "
        "engine's rounds back to back (the older method, for comparison).",
    )
    max_cv: float = Field(
        0.25,
        gt=0,
        description="An engine whose latency CV (std / mean) is above this is flagged noisy (a run "
        "warning and `noisy` in the report).",
    )
    remeasure: int = Field(
        2,
        ge=0,
        description="Times to re-measure (the baseline and the engines concerned, interleaved, rounds "
        "pooled) while a speed gate's 95% interval straddles its threshold.",
    )
    inconclusive: Literal["fail", "pass"] = Field(
        "fail",
        description="What a speed gate still inconclusive after the re-measurements does to the exit "
        "code: fail (exit 1) or pass (exit 0); the report says inconclusive either way.",
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="Threads for every engine (fair comparison). Default: each runtime's.",
    )
    steady_heap: bool = Field(
        True,
        description="Keep freed memory in the process while benchmarking (glibc mallopt), so PyTorch "
        "eager does not page-fault its activations in on every call, as a server with jemalloc or "
        "tcmalloc runs it; those faults' cost moves with the machine's state. false: glibc's defaults.",
    )
    gates: dict[str, str] = Field(
        default_factory=dict,
        description="Metric -> threshold for every engine and batch size, e.g. {speedup: '>= 2'}, "
        "decided on the value's 95% interval. Metrics: " + ", ".join(BENCHMARK_METRICS),
    )

    _check_gates = field_validator("gates")(lambda cls, v: check_gate_names(v, BENCHMARK_METRICS))

    @field_validator("batch_sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if any(s < 1 for s in sizes):
            raise ValueError(f"batch sizes must be >= 1, got {sizes}")
        return sizes

    @model_validator(mode="after")
    def _min_time_within_budget(self) -> BenchmarkSection:
        if self.min_time_s and self.time_budget_s and self.min_time_s > self.time_budget_s:
            raise ValueError(
                f"min_time_s ({self.min_time_s:g}) is more than time_budget_s ({self.time_budget_s:g}): "
                "the budget stops timing first"
            )
        return self


class BaselineSection(StrictModel):
    """The reference every engine is compared with: the PyTorch model in eager FP32."""

    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="Where the baseline runs; use cuda to compare GPU engines on the same GPU."
    )
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads on CPU. Default: benchmark.threads."
    )


class ReportSection(StrictModel):
    """Where and how results are written."""

    output_dir: str | None = Field(
        None,
        description="Run folder (relative to the current directory). Default: runs/<name>. --out overrides.",
    )
    formats: list[Literal["json", "md", "junit", "html"]] = Field(
        default_factory=lambda: ["json", "md"],
        description="Files to write besides the terminal tables: report.json, report.md (a PR "
        "comment), report.junit.xml (one testcase per gate), report.html (one self-contained page).",
    )


class Recipe(LocatedModel):
    """An optcli recipe: how to turn one PyTorch model into validated, benchmarked artifacts."""

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Recipe format version.")
    name: str = Field(
        description="Short name; default run folder is runs/<name>.", pattern=r"^[A-Za-z0-9_.-]+$"
    )
    description: str = Field("", description="Free text shown in reports.")
    model: ModelSection
    export: ExportSection = Field(default_factory=ExportSection)
    passes: list[PassConfig] = Field(
        default_factory=list,
        description="ONNX graph passes in order; each a name or {name: ..., options}. Names: "
        f"{', '.join(PASSES)}.",
    )
    quantization: QuantizationSettings | None = Field(None, description="Omit to skip quantization.")
    build: list[EngineEntry] = Field(
        default_factory=lambda: [OnnxRuntimeConfig()],
        description="Engines to build and compare with the PyTorch eager FP32 baseline.",
    )
    baseline: BaselineSection = Field(default_factory=BaselineSection)
    target: Literal["cpu", "gpu", "auto"] | None = Field(
        None,
        description="Also build every available engine/precision candidate for this target (cpu: ONNX "
        "Runtime FP32/INT8, OpenVINO FP32/BF16/INT8 with NNCF, mixed INT8, AOTInductor BF16; gpu: "
        "torch eager FP16/BF16, torch.compile, AOTInductor, torchao INT8/FP8, TensorRT, ORT-GPU, against "
        "eager FP32 on the GPU), validate each, and choose the fastest that passes the validate gates; "
        "the report ranks them. auto: cpu. CLI: --target.",
    )
    skip_unavailable: bool = Field(
        False,
        description="Report build engines that cannot run on this machine (package, GPU or precision "
        "missing) as skipped instead of stopping with exit 3. CLI: --skip-unavailable.",
    )
    validate_: ValidateSection = Field(default_factory=ValidateSection, alias="validate")
    benchmark: BenchmarkSection = Field(default_factory=BenchmarkSection)
    report: ReportSection = Field(default_factory=ReportSection)
    regression: RegressionSection | None = Field(
        None, description="Allowed changes vs a base report (run --against, compare)."
    )

    model_config = ConfigDict(**StrictModel.model_config, populate_by_name=True)

    @field_validator("passes", mode="before")
    @classmethod
    def _names_as_entries(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    _class_output = field_validator("validate_")(crossfield.class_output_is_an_output)
    _batch_sizes = field_validator("benchmark")(crossfield.batch_sizes_in_dims)
    _slo_mode = field_validator("benchmark")(crossfield.mode_settings_agree)

    @model_validator(mode="after")
    def _unique_engine_names(self) -> Recipe:
        labels = [entry.name for entry in self.build if entry.name]
        duplicates = sorted({n for n in labels if labels.count(n) > 1})
        if duplicates:
            raise ValueError(f"build: engine names must be unique, repeated: {duplicates}")
        return self
