"""Recipe parsing: defaults, errors located by file:line and dotted field, --set overrides, schema."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import tiny_recipe_text

from optcli.backends.onnxruntime import OnnxRuntimeConfig
from optcli.calibration.synthetic import SyntheticSource
from optcli.errors import RecipeError, UserInputError
from optcli.gates import BENCHMARK_METRICS, VALIDATION_METRICS
from optcli.passes import PASSES
from optcli.recipe import all_errors, apply_override, load_recipe, parse_recipe, recipe_schema
from optcli.specs import DimRange

REPO = Path(__file__).resolve().parents[1]


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of `text` containing `needle`."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in recipe text")


def load_error(path: Path, overrides: list[str] | None = None) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipe(path, overrides)
    return info.value


def assert_located(err: RecipeError, path: Path, line: int | None, field: str | None) -> None:
    assert err.file == str(path)
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    where = f"{path}:{line}" if line is not None else str(path)
    assert str(err).startswith(where + ":"), str(err)
    if field:
        assert f"field '{field}'" in str(err)


# --------------------------------------------------------------------------------------------- valid


def test_tiny_recipe_parses_with_defaults(tiny_recipe, model_dir):
    recipe = tiny_recipe()
    assert recipe.name == "tiny"
    assert recipe.schema_version == 1
    assert recipe.description == ""
    assert recipe.model.source == "models.py:make_two_layer"
    assert recipe.model.kwargs == {}
    assert recipe.model.checkpoint is None
    assert recipe.model.batch_dim == "batch"
    assert recipe.model.dims == {"batch": DimRange(min=1, opt=4, max=32)}
    assert [(s.name, s.shape, s.dtype) for s in recipe.model.inputs] == [("x", ["batch", 16], "float32")]
    assert (recipe.export.exporter, recipe.export.opset, recipe.export.verify) == ("dynamo", 18, True)
    assert recipe.export.external_data is None
    assert recipe.passes == []
    assert recipe.quantization is None
    assert recipe.build == [OnnxRuntimeConfig()]
    assert recipe.build[0].artifact == "final"
    assert recipe.validate_.enabled is True
    assert (recipe.validate_.samples, recipe.validate_.batch_size) == (32, 16)
    assert recipe.validate_.data == SyntheticSource(seed=1_000_003)
    assert recipe.validate_.gates == {}
    assert recipe.benchmark.batch_sizes == [1]
    assert (recipe.benchmark.warmup, recipe.benchmark.iterations) == (1, 3)
    assert recipe.report.formats == ["json", "md"]
    assert recipe.report.output_dir is None
    # Relative paths in the recipe start from the recipe's folder.
    assert recipe.base_dir == model_dir.resolve()
    assert recipe.source_file == model_dir / "recipe.yaml"


def test_batch_dim_range_defaults_when_not_listed(tiny_recipe):
    model = "model:\n  source: models.py:make_two_layer\n  inputs:\n    - {name: x, shape: [batch, 16]}\n"
    recipe = tiny_recipe(model=model)
    assert recipe.model.dims == {"batch": DimRange(min=1, opt=None, max=64)}
    assert recipe.model.dims["batch"].typical == 1


def test_custom_batch_dim_and_second_dynamic_dim(tiny_recipe):
    model = (
        "model:\n  source: models.py:make_two_inputs\n  batch_dim: n\n  inputs:\n"
        "    - {name: tokens, shape: [n, seq, 8]}\n    - {name: mask, shape: [n, seq]}\n"
        "  dims:\n    seq: {min: 2, opt: 8, max: 128}\n"
    )
    recipe = tiny_recipe(model=model)
    assert recipe.model.batch_dim == "n"
    assert recipe.model.dims["n"] == DimRange()
    assert recipe.model.dims["seq"] == DimRange(min=2, opt=8, max=128)


def test_pass_names_become_entries_and_quantization_defaults(tiny_recipe):
    recipe = tiny_recipe(
        passes="passes: [shape_inference, {name: ort_optimize, level: extended}, fp16]",
        quantization="quantization: {precision: int8}",
    )
    assert [p.name for p in recipe.passes] == ["shape_inference", "ort_optimize", "fp16"]
    assert recipe.passes[1].level == "extended"
    quant = recipe.quantization
    assert (quant.precision, quant.quantizer, quant.per_channel) == ("int8", "onnxruntime", True)
    assert quant.calibration.data == SyntheticSource(seed=0)
    assert quant.resolved_method() == "minmax"


@pytest.mark.parametrize("path", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path):
    recipe = load_recipe(path)
    assert recipe.source_file == path
    assert all_errors(path.read_text(encoding="utf-8"), source=path) == []


# ----------------------------------------------------------------------------------- unknown keys


UNKNOWN_KEYS = {
    "top-level": (
        {"description": "colour: red"},
        "colour: red",
        "colour",
    ),
    "nested": (
        {"export": "export:\n  exporter: dynamo\n  opsett: 17"},
        "opsett",
        "export.opsett",
    ),
    "model.inputs entry": (
        {
            "model": "model:\n  source: models.py:make_two_layer\n  inputs:\n"
            "    - name: x\n      shape: [batch, 16]\n      dtyp: float32\n"
        },
        "dtyp",
        "model.inputs.0.dtyp",
    ),
    "build entry": (
        {"build": "build:\n  - engine: torch\n  - engine: onnxruntime\n    threadz: 2"},
        "threadz",
        "build.1.threadz",
    ),
    "passes entry": (
        {"passes": "passes:\n  - fp16\n  - name: ort_optimize\n    levle: all"},
        "levle",
        "passes.1.levle",
    ),
    "data source": (
        {"validate": "validate:\n  samples: 32\n  data:\n    type: synthetic\n    sed: 3"},
        "sed: 3",
        "validate.data.sed",
    ),
    "calibration": (
        {"quantization": "quantization:\n  precision: int8\n  calibration:\n    sample: 8"},
        "sample: 8",
        "quantization.calibration.sample",
    ),
}


@pytest.mark.parametrize("case", UNKNOWN_KEYS, ids=str)
def test_unknown_key_names_file_line_and_dotted_field(write_recipe, case):
    sections, marker, field = UNKNOWN_KEYS[case]
    path = write_recipe(**sections)
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), marker), field)
    assert "unknown field" in err.message
    assert isinstance(err, UserInputError) and err.exit_code == 2


# ----------------------------------------------------------------------------------- wrong types


WRONG_TYPES = {
    "int": ("benchmark", "benchmark: {batch_sizes: [1], iterations: many}", "benchmark.iterations", "'many'"),
    "bool": ("export", "export: {verify: perhaps}", "export.verify", "'perhaps'"),
    "list": ("benchmark", "benchmark: {batch_sizes: 4x}", "benchmark.batch_sizes", "list"),
    "literal": (
        "quantization",
        "quantization: {precision: int4}",
        "quantization.precision",
        "'fp32', 'fp16', 'int8' or 'fp8'",
    ),
    "bound": ("export", "export: {opset: 99}", "export.opset", "less than or equal to 23"),
    "pattern": ("name", "name: has spaces", "name", "pattern"),
    "dim": (
        "model",
        "model:\n  source: models.py:make_two_layer\n  inputs:\n    - {name: x, shape: [batch, 0]}",
        "model.inputs.0.shape",
        "static dimension 0 must be >= 1",
    ),
}


@pytest.mark.parametrize("case", WRONG_TYPES, ids=str)
def test_wrong_type_names_field_and_value(write_recipe, case):
    section, text, field, expected = WRONG_TYPES[case]
    path = write_recipe(tiny_recipe_text(**{section: text}))  # 'name' would name the file
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), text.splitlines()[-1].strip()), field)
    assert expected in err.message


def test_validate_alias_is_reported_as_written(write_recipe):
    path = write_recipe(validate="validate:\n  samples: 0")
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "samples: 0"), "validate.samples")
    assert "greater than or equal to 1" in err.message


def test_missing_required_field_points_at_its_section(write_recipe):
    path = write_recipe(model="model:\n  inputs:\n    - {name: x, shape: [batch, 16]}")
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "model:"), "model.source")
    assert "required field is missing" in err.message


def test_first_error_mentions_how_many_more(write_recipe):
    path = write_recipe(benchmark="benchmark: {iterations: 0, warmup: -1}")
    err = load_error(path)
    assert err.field in ("benchmark.iterations", "benchmark.warmup")
    assert "and 1 more problem;" in err.message
    assert "optcli recipe validate" in err.message


# ---------------------------------------------------------------------- registries and semantics


def test_unknown_pass_name_lists_known_names(write_recipe):
    path = write_recipe(passes="passes:\n  - shape_inference\n  - fp17")
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "fp17"), "passes.1")
    assert "'fp17'" in err.message
    for name in PASSES:
        assert name in err.message
    assert set(PASSES) == {"shape_inference", "onnxscript_optimize", "ort_optimize", "fp16"}


def test_unknown_engine_lists_known_engines(write_recipe):
    path = write_recipe(build="build:\n  - engine: onnxruntime\n  - engine: tensorrtx")
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "tensorrtx"), "build.1")
    assert "'tensorrtx'" in err.message
    assert "'onnxruntime'" in err.message and "'torch'" in err.message and "'tensorrt'" in err.message


def test_unknown_data_source_type_lists_known_types(write_recipe):
    path = write_recipe(validate="validate:\n  data: {type: parquet, path: x.parquet}")
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "parquet"), "validate.data")
    for kind in ("'files'", "'callable'", "'synthetic'", "'parquet'"):
        assert kind in err.message


def test_files_source_requires_path(write_recipe):
    path = write_recipe(quantization="quantization:\n  calibration:\n    data: {type: files}")
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "data:"), "quantization.calibration.data.path")
    assert "required field is missing" in err.message


@pytest.mark.parametrize(
    ("section", "gates", "problem"),
    [
        ("validate", '{cosine: "about 0.99"}', "is not '<op> <number>'"),
        ("validate", '{cosine: "=> 0.99"}', "is not '<op> <number>'"),
        ("validate", '{cosine: ">= "}', "is not '<op> <number>'"),
        ("validate", '{cosin: ">= 0.99"}', "unknown gate 'cosin'; known: " + ", ".join(VALIDATION_METRICS)),
        ("benchmark", '{speedup: "fast"}', "is not '<op> <number>'"),
        ("benchmark", '{latency: "<= 1"}', "unknown gate 'latency'; known: " + ", ".join(BENCHMARK_METRICS)),
        # a validation metric is not a benchmark metric
        ("benchmark", '{cosine: ">= 0.9"}', "unknown gate 'cosine'"),
    ],
)
def test_bad_gates_are_rejected(write_recipe, section, gates, problem):
    path = write_recipe(**{section: f"{section}:\n  gates: {gates}"})
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "gates:"), f"{section}.gates")
    assert problem in err.message


@pytest.mark.parametrize("expr", [">= 0.99", "<=1e-3", "> -5", "< .5", "== 1", "  >=  2.  "])
def test_good_gate_expressions_are_accepted(tiny_recipe, expr):
    recipe = tiny_recipe(
        validate=f'validate: {{gates: {{cosine: "{expr}", accuracy_drop: "{expr}"}}}}',
        benchmark=f'benchmark: {{gates: {{speedup: "{expr}", p99_ms: "{expr}"}}}}',
    )
    assert recipe.validate_.gates["cosine"] == expr
    assert recipe.benchmark.gates["p99_ms"] == expr


def test_named_dynamic_dim_needs_a_range(write_recipe):
    model = (
        "model:\n  source: models.py:make_two_inputs\n  inputs:\n"
        "    - {name: tokens, shape: [batch, seq, 8]}\n    - {name: mask, shape: [batch, seq]}\n"
    )
    path = write_recipe(model=model)
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "model:"), "model")
    assert "['seq']" in err.message and "model.dims" in err.message


def test_first_dim_must_be_the_batch_dim(write_recipe):
    model = (
        "model:\n  source: models.py:make_two_layer\n  inputs:\n    - {name: x, shape: [16, batch]}\n"
        "  dims:\n    batch: {max: 8}\n"
    )
    path = write_recipe(model=model)
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "model:"), "model")
    assert "input 'x'" in err.message and "first dim must be the batch dim 'batch'" in err.message


def test_duplicate_input_names_are_rejected(write_recipe):
    model = (
        "model:\n  source: models.py:make_two_layer\n  inputs:\n"
        "    - {name: x, shape: [batch, 16]}\n    - {name: x, shape: [batch, 4]}\n"
    )
    err = load_error(write_recipe(model=model))
    assert err.field == "model"
    assert "input names must be unique" in err.message


def test_dim_range_must_be_ordered(write_recipe):
    model = (
        "model:\n  source: models.py:make_two_layer\n  inputs:\n    - {name: x, shape: [batch, 16]}\n"
        "  dims:\n    batch: {min: 8, opt: 4, max: 32}\n"
    )
    path = write_recipe(model=model)
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "min: 8"), "model.dims.batch")
    assert "need min <= opt <= max, got 8, 4, 32" in err.message


def test_duplicate_engine_names_are_rejected(write_recipe):
    path = write_recipe(build="build:\n  - {engine: onnxruntime, name: a}\n  - {engine: torch, name: a}")
    err = load_error(path)
    assert "engine names must be unique" in err.message and "['a']" in err.message


@pytest.mark.parametrize("method", ["auto", "minmax", "entropy", "percentile", "distribution"])
def test_fp8_accepts_every_calibration_method(tiny_recipe, method):
    # FP8 ranges now come from ORT's range calibrators (amax / 448), so minmax & co. are valid for fp8.
    recipe = tiny_recipe(quantization=f"quantization:\n  precision: fp8\n  calibration: {{method: {method}}}")
    assert recipe.quantization.precision == "fp8"
    assert recipe.quantization.resolved_method() == ("minmax" if method == "auto" else method)


def test_int8_rejects_distribution_method(write_recipe):
    path = write_recipe(quantization="quantization: {precision: int8, calibration: {method: distribution}}")
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "quantization:"), "quantization")
    assert "'distribution' is for fp8" in err.message


def test_unknown_calibration_method(write_recipe):
    path = write_recipe(quantization="quantization:\n  precision: fp8\n  calibration:\n    method: kl")
    err = load_error(path)
    assert_located(err, path, line_of(path.read_text(), "method: kl"), "quantization.calibration.method")
    assert "'minmax'" in err.message and "(got 'kl')" in err.message


@pytest.mark.parametrize(
    ("precision", "method", "resolved"),
    [("int8", "auto", "minmax"), ("fp8", "auto", "minmax"), ("int8", "entropy", "entropy")],
)
def test_calibration_method_resolution(tiny_recipe, precision, method, resolved):
    recipe = tiny_recipe(
        quantization=f"quantization: {{precision: {precision}, calibration: {{method: {method}}}}}"
    )
    assert recipe.quantization.resolved_method() == resolved


# ------------------------------------------------------------------------------ YAML-level errors


def test_invalid_yaml_names_the_line(write_recipe):
    text = (
        "name: tiny\nmodel:\n  source: models.py:make_two_layer\n  inputs: [{name: x, shape: [batch, 16]}\n"
    )
    path = write_recipe(text)
    err = load_error(path)
    assert err.file == str(path)
    assert err.line is not None and 4 <= err.line <= 5
    assert err.message.startswith(f"{path}:{err.line}: invalid YAML:")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_top_level_must_be_a_mapping(write_recipe, text):
    path = write_recipe(text)
    err = load_error(path)
    assert_located(err, path, 1, None)
    assert "must be a YAML mapping" in err.message


def test_missing_recipe_file(tmp_path):
    err = load_error(tmp_path / "nope.yaml")
    assert err.file == str(tmp_path / "nope.yaml")
    assert "recipe file does not exist" in err.message


def test_directory_is_not_a_recipe_file(tmp_path):
    err = load_error(tmp_path)
    assert "not a file" in err.message


# ------------------------------------------------------------------------------------- overrides


def raw_recipe() -> dict:
    return {
        "name": "tiny",
        "model": {"source": "m.py:f", "inputs": [{"name": "x", "shape": ["batch", 16]}]},
        "passes": ["shape_inference", "ort_optimize"],
        "build": [{"engine": "onnxruntime"}],
        "benchmark": {"iterations": 3},
    }


@pytest.mark.parametrize(
    ("assignment", "check"),
    [
        ("benchmark.iterations=7", lambda d: d["benchmark"]["iterations"] == 7),
        ("benchmark.batch_sizes=[1, 8]", lambda d: d["benchmark"]["batch_sizes"] == [1, 8]),
        ("export.verify=false", lambda d: d["export"] == {"verify": False}),
        ("report.output_dir=out/run1", lambda d: d["report"] == {"output_dir": "out/run1"}),
        ("description=", lambda d: d["description"] == ""),
        ("description=a=b", lambda d: d["description"] == "a=b"),
        ("build.0.threads=4", lambda d: d["build"] == [{"engine": "onnxruntime", "threads": 4}]),
        ("build.1={engine: torch}", lambda d: d["build"][1] == {"engine": "torch"}),
        ("model.inputs.0.shape.1=15", lambda d: d["model"]["inputs"][0]["shape"] == ["batch", 15]),
        (
            "passes.1.level=all",
            lambda d: d["passes"] == ["shape_inference", {"name": "ort_optimize", "level": "all"}],
        ),
        ("passes.2=fp16", lambda d: d["passes"][2] == "fp16"),
        (
            "quantization.calibration.samples=8",
            lambda d: d["quantization"] == {"calibration": {"samples": 8}},
        ),
        ('validate.gates.cosine=">= 0.9"', lambda d: d["validate"]["gates"] == {"cosine": ">= 0.9"}),
        # not valid YAML (an unquoted '>' starts a block scalar): taken as the string it is
        ("validate.gates.cosine=>= 0.9", lambda d: d["validate"]["gates"] == {"cosine": ">= 0.9"}),
        ("validate.gates.cosine=>0.9", lambda d: d["validate"]["gates"] == {"cosine": ">0.9"}),
        ("name=[abc", lambda d: d["name"] == "[abc"),
        ("model.dims.seq.max=128", lambda d: d["model"]["dims"] == {"seq": {"max": 128}}),
        ("extra.0=1", lambda d: d["extra"] == [1]),
    ],
)
def test_apply_override(assignment, check):
    data = raw_recipe()
    before = copy.deepcopy(data)
    apply_override(data, assignment)
    assert check(data), data
    key = assignment.partition("=")[0].split(".")[0]
    assert {k: v for k, v in data.items() if k != key} == {k: v for k, v in before.items() if k != key}


@pytest.mark.parametrize(
    ("assignment", "field", "problem"),
    [
        ("benchmark.iterations", None, "expects 'dotted.field=value'"),
        ("=3", None, "expects 'dotted.field=value'"),
        (" =3", None, "expects 'dotted.field=value'"),
        ("model.dims={a: 1, a: 2}", "model.dims", "is refused: duplicate key 'a'"),
        ("model.inputs.3.name=y", "model.inputs.3", "index 3 is out of range (the list has 1 entries)"),
        ("build.2.threads=1", "build.2", "index 2 is out of range (the list has 1 entries)"),
        ("passes.5=fp16", "passes.5", "index 5 is out of range (the list has 2 entries)"),
        ("model.inputs.first.name=y", "model.inputs.first", "is a list; use a numeric index"),
        ("model.inputs.x=1", "model.inputs.x", "is a list; use a numeric index"),
        ("name.x.y=1", "name.x", "'name' is not a section"),
    ],
)
def test_bad_overrides_raise_recipe_error(assignment, field, problem):
    data = raw_recipe()
    with pytest.raises(RecipeError) as info:
        apply_override(data, assignment)
    err = info.value
    assert err.file == "--set"
    assert err.field == field
    assert problem in err.message
    assert err.message.startswith("--set: ")


@pytest.mark.parametrize("assignment", ["model.source.file=x.py", "name.0=x"])
def test_override_into_a_scalar_is_a_recipe_error(assignment):
    try:
        apply_override(raw_recipe(), assignment)
    except RecipeError as err:
        assert err.file == "--set"
        assert "not a section" in err.message
    except Exception as exc:
        raise AssertionError(f"--set {assignment} raised {type(exc).__name__}: {exc}") from exc
    else:
        raise AssertionError("no error")


def test_override_into_default_build(write_recipe):
    recipe = load_recipe(write_recipe(), ["build.0.threads=4"])
    assert recipe.build[0].threads == 4


def test_load_recipe_with_overrides(write_recipe):
    path = write_recipe(passes="passes: [ort_optimize]")
    text = path.read_text()
    recipe = load_recipe(
        path,
        [
            "quantization.precision=fp8",
            "passes.0.level=extended",
            "benchmark.iterations=5",
            "benchmark.iterations=9",  # the last assignment wins
            "model.dims.batch.max=16",
        ],
    )
    assert recipe.quantization.precision == "fp8"
    assert recipe.passes[0].level == "extended"
    assert recipe.benchmark.iterations == 9
    assert recipe.model.dims["batch"] == DimRange(min=1, opt=4, max=16)
    assert path.read_text() == text  # the file itself is never touched


def test_override_result_is_validated_and_located(write_recipe):
    path = write_recipe()
    err = load_error(path, ["benchmark.iterations=0"])
    assert err.file == f"{path} (--set benchmark.iterations)"  # the bad value came from --set, not the file
    assert err.line is None and err.field == "benchmark.iterations"
    err = load_error(path, ["export.colour=red"])
    assert err.field == "export.colour"  # not in the file: no line of its own
    assert "unknown field" in err.message
    err = load_error(path, ["quantization.precision=int8", "quantization.calibration.method=distribution"])
    assert err.field == "quantization" and "'distribution' is for fp8" in err.message


def test_error_in_an_override_points_at_the_override(write_recipe):
    path = write_recipe()
    err = load_error(path, ["export.opset=12"])
    assert err.field == "export.opset"
    assert err.line is None
    assert "--set" in err.message


# ------------------------------------------------------------------------------------ all_errors


def test_all_errors_reports_every_problem(write_recipe):
    path = write_recipe(
        export="export:\n  opset: 99\n  exporterr: dynamo",
        passes="passes: [fp17, {name: fp16, keep_io: true}]",
        build="build:\n  - engine: nope",
        benchmark="benchmark: {iterations: 0, gates: {foo: '>= 1'}}",
    )
    text = path.read_text()
    problems = all_errors(text, source=path)
    assert all(isinstance(p, RecipeError) for p in problems)
    by_field = {p.field: p for p in problems}
    expected = {
        "export.opset": "opset: 99",
        "export.exporterr": "exporterr",
        "passes.0": "passes:",
        "passes.1.keep_io": "passes:",
        "build.0": "engine: nope",
        "benchmark.iterations": "benchmark:",
        "benchmark.gates": "benchmark:",
    }
    assert set(by_field) == set(expected)
    for field, marker in expected.items():
        assert_located(by_field[field], path, line_of(text, marker), field)
        assert "more problem" not in by_field[field].message


def test_all_errors_on_valid_and_unparsable_recipes(write_recipe):
    assert all_errors(tiny_recipe_text()) == []
    problems = all_errors("name: [unclosed\n", source=Path("r.yaml"))
    assert len(problems) == 1
    assert problems[0].message.startswith("r.yaml:")
    assert "invalid YAML" in problems[0].message
    problems = all_errors("name: x\n")
    assert [p.field for p in problems] == ["model"]
    assert problems[0].message.startswith("<recipe>:")


def test_parse_recipe_without_source_says_recipe(tiny_recipe):
    with pytest.raises(RecipeError) as info:
        parse_recipe(tiny_recipe_text(export="export: {opset: 12}"))
    assert info.value.message.startswith("<recipe>:")
    assert info.value.field == "export.opset"


# ---------------------------------------------------------------------------------------- schema


def _walk_refs(node, found):
    if isinstance(node, dict):
        if "$ref" in node:
            found.add(node["$ref"])
        for value in node.values():
            _walk_refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk_refs(value, found)
    return found


def test_schema_is_self_contained_json():
    schema = recipe_schema()
    assert json.loads(json.dumps(schema)) == schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "optcli recipe"
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"name", "model"}
    assert schema["additionalProperties"] is False
    refs = _walk_refs(schema, set())
    assert refs, "sections are expected as $defs"
    for ref in refs:
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in schema["$defs"], ref


def test_schema_uses_the_names_recipes_use():
    schema = recipe_schema()
    props = schema["properties"]
    assert set(props) >= {
        "schema_version",
        "name",
        "description",
        "model",
        "export",
        "passes",
        "quantization",
        "build",
        "validate",
        "benchmark",
        "report",
    }
    assert props["name"]["pattern"] == "^[A-Za-z0-9_.-]+$"
    export = schema["$defs"]["ExportSection"]["properties"]
    assert export["exporter"]["enum"] == ["dynamo", "torchscript"]
    assert (export["opset"]["minimum"], export["opset"]["maximum"]) == (13, 23)


def test_schema_documents_fields():
    schema = recipe_schema()
    props = schema["properties"]
    for name in ("name", "passes", "build", "quantization", "schema_version"):
        assert props[name].get("description"), name
    assert "onnxscript_optimize" in props["passes"]["description"]
    defs = schema["$defs"]
    assert "minmax" in defs["CalibrationSettings"]["properties"]["method"]["description"]
    for metric in VALIDATION_METRICS:
        assert metric in defs["ValidateSection"]["properties"]["gates"]["description"]
    for metric in BENCHMARK_METRICS:
        assert metric in defs["BenchmarkSection"]["properties"]["gates"]["description"]
    for section in ("ModelSection", "ExportSection", "ValidateSection", "BenchmarkSection", "InputSpec"):
        assert defs[section].get("description"), section
        assert defs[section]["additionalProperties"] is False, section
    # Every field a user types has a description, except the tags that pick a union member.
    undocumented = [
        f"{name}.{prop}"
        for name, definition in defs.items()
        for prop, spec in definition.get("properties", {}).items()
        if "description" not in spec and "$ref" not in spec and prop not in ("type", "engine", "name")
    ]
    assert undocumented == []


def test_schema_covers_the_keys_of_shipped_recipes():
    import yaml

    from optcli.recipe.loader import recipe_model

    for path in (REPO / "recipes").glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        props = recipe_model(data).model_json_schema(by_alias=True)["properties"]  # llm recipes: theirs
        assert set(data) <= set(props), path


# ------------------------------------------------------------------------- run-time recipe checks


def test_validation_data_equal_to_calibration_data_is_refused_before_any_stage(tiny_recipe, tmp_path):
    from optcli.console import SilentUI
    from optcli.pipeline import run_recipe

    recipe = tiny_recipe(
        export="export: {exporter: torchscript}",
        quantization="quantization:\n  calibration:\n"
        "    {data: {type: synthetic, seed: 5}, samples: 8, batch_size: 4}",
        validate="validate: {data: {type: synthetic, seed: 5}, samples: 8, batch_size: 4}",
    )
    out = tmp_path / "run"
    with pytest.raises(UserInputError) as info:
        run_recipe(recipe, out, SilentUI())
    assert "validate.data" in info.value.message
    assert "quantization.calibration.data" in info.value.message
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "error" and report["verdict"] == "error"
    assert report["stages"] == []  # preflight refuses it before export
    assert not any(p.name.startswith(".staging-") or p.suffix == ".onnx" for p in out.iterdir())
