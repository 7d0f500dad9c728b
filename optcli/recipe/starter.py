"""`optcli recipe init`: a commented starter recipe built from a model reference and input specs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from optcli.errors import UserInputError
from optcli.recipe.loader import parse_recipe
from optcli.recipe.models import SERIALIZED_MODEL_SUFFIXES
from optcli.specs import parse_input_flag

TEMPLATE = """\
# optcli recipe: edit, then `optcli recipe validate {path}` and `optcli run {path}`.
# Every field is documented in `optcli recipe schema`.
name: {name}
model:
  source: {source}
  inputs:
{inputs}
  dims:
{dims}
export:
  exporter: dynamo
  opset: 18
passes: [onnxscript_optimize, shape_inference]
quantization:
  precision: int8            # fp32 | fp16 | int8 | fp8
  calibration:
    # Replace with real data: {{type: files, path: calib/*.npz}} or {{type: callable, callable: pkg.mod:fn}}
    data: {{type: synthetic, seed: 0}}
    samples: 128
    batch_size: 16
build:
  - engine: onnxruntime
validate:
  # Held-out data, never the calibration data. Labels enable task accuracy.
  data: {{type: synthetic, seed: 1}}
  samples: 128
  gates:
    cosine: ">= 0.99"
benchmark:
  batch_sizes: [1]
  iterations: 50
"""


def recipe_relative_source(model: str, output: Path) -> str:
    """--model as the recipe must say it: a file path typed relative to the current directory is
    rewritten relative to the recipe's folder, which is where recipe paths start from."""
    file_part, sep, attr = model.rpartition(":")
    if not (sep and file_part.endswith(".py")):
        if not model.endswith(SERIALIZED_MODEL_SUFFIXES):
            return model  # 'pkg.module:factory' is imported, not opened
        file_part, sep, attr = model, "", ""
    path = Path(file_part)
    if path.is_absolute():
        return model
    folder = output.parent.resolve()
    if path.exists():
        relative = Path(os.path.relpath(path.resolve(), folder)).as_posix()
    elif (folder / path).exists():
        relative = path.as_posix()  # already relative to the recipe's folder
    else:
        raise UserInputError(
            f"--model: file '{file_part}' does not exist (looked in the current directory, "
            f"{Path.cwd()}, and in the recipe's folder, {folder})"
        )
    return f"{relative}{sep}{attr}"


def write_starter(model: str, input_flags: list[str], output: Path, *, name: str | None, force: bool) -> Path:
    if output.exists() and not force:
        raise UserInputError(f"--output: '{output}' exists; pass --force to overwrite it")
    try:
        specs = [parse_input_flag(flag) for flag in input_flags]
    except ValueError as exc:
        raise UserInputError(f"--input: {exc}") from exc
    recipe_name = name or re.sub(r"[^A-Za-z0-9_.-]+", "-", model.rsplit(":", 1)[-1]).strip("-") or "model"
    dims = sorted({d for spec in specs for d in spec.dynamic_dims})
    dim_lines = [f"    {d}: {{min: 1, opt: 1, max: {64 if d == 'batch' else 512}}}" for d in dims]
    input_lines = [
        f"    - {{name: {spec.name}, shape: {yaml.safe_dump(spec.shape, default_flow_style=True).strip()}, "
        f"dtype: {spec.dtype}}}"
        for spec in specs
    ]
    text = TEMPLATE.format(
        path=output,
        name=recipe_name,
        source=recipe_relative_source(model, output),
        inputs="\n".join(input_lines),
        dims="\n".join(dim_lines) or "    {}",
    )
    parse_recipe(text, source=output)  # never write a starter that does not validate
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    return output
