"""Mistakes in the user's data, data code, checkpoint or declared dtypes are bad input: `optcli run` exits 2
with one paragraph naming the recipe field (or file) and the cause, never exit 4 "internal error".

Every case is a real `optcli run` process on real files. They all start at once (two at a time) when
the first test asks for a result, so the module costs about half the sum of its runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL_FILE, tiny_recipe_text

FAST_EXPORT = "export: {exporter: torchscript}"  # the data checks do not depend on the exporter

DATA_CODE = """
import numpy as np


def nothing():
    return iter(())


def unreachable_database():
    raise ConnectionError("database at db:5432 is down")


def corrupt_record():
    yield {"x": np.zeros((4, 16), "float32")}
    raise ValueError("record 7 is corrupt")


def all_nan():
    for _ in range(2):
        yield {"x": np.full((8, 16), np.nan, "float32")}


def some_nan():
    rng = np.random.default_rng(0)
    for _ in range(2):
        x = rng.standard_normal((8, 16)).astype("float32")
        x[3, :4] = np.nan
        yield {"x": x}


def ragged():
    yield {"x": [[0.0] * 16, [0.0] * 15]}
"""

NAN_MODEL = '''

class LogOfNegative(nn.Module):
    """Finite inputs, NaN activations: log() of values that are always < 0."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc2(torch.log(-torch.relu(self.fc1(x)) - 1.0))


def make_log_of_negative():
    torch.manual_seed(0)
    return LogOfNegative().eval()
'''


def calibration(data: str) -> str:
    return f"quantization: {{precision: int8, calibration: {{samples: 16, batch_size: 8, data: {data}}}}}"


def model_section(source: str = "models.py:make_two_layer", dtype: str = "float32", extra: str = "") -> str:
    return (
        f"model:\n  source: {source}\n{extra}"
        f"  inputs:\n    - {{name: x, shape: [batch, 16], dtype: {dtype}}}\n"
        "  dims:\n    batch: {min: 1, opt: 4, max: 32}\n"
    )


SOME_NAN = "{type: callable, callable: 'data.py:some_nan'}"

# name -> (recipe sections, strings the error must contain; the first is the field report.json names)
CASES: dict[str, tuple[dict[str, str], list[str]]] = {
    "truncated-npz": (
        {"quantization": calibration("{type: files, path: truncated.npz}")},
        ["quantization.calibration.data.path", "truncated.npz", "truncated or corrupt"],
    ),
    "zero-byte-npz": (
        {"quantization": calibration("{type: files, path: empty-file.npz}")},
        ["quantization.calibration.data.path", "empty-file.npz", "the file is empty"],
    ),
    "npz-with-0-samples": (
        {"quantization": calibration("{type: files, path: no-rows.npz}")},
        ["quantization.calibration.data", "no-rows.npz", "yielded no samples"],
    ),
    "all-nan-npz": (
        {"quantization": calibration("{type: files, path: all-nan.npz}")},
        ["quantization.calibration.data", "input 'x' is entirely NaN/Inf", "all-nan.npz"],
    ),
    "callable-yields-nothing": (
        {"quantization": calibration("{type: callable, callable: 'data.py:nothing'}")},
        ["quantization.calibration.data", "'data.py:nothing' yielded no samples"],
    ),
    "callable-raises": (
        {"quantization": calibration("{type: callable, callable: 'data.py:unreachable_database'}")},
        [
            "quantization.calibration.data.callable",
            "ConnectionError: database at db:5432 is down",
            "(at data.py:10)",
        ],
    ),
    "callable-raises-while-iterating": (
        {"quantization": calibration("{type: callable, callable: 'data.py:corrupt_record'}")},
        ["quantization.calibration.data", "ValueError: record 7 is corrupt", "(at data.py:15)"],
    ),
    "callable-all-nan": (
        {"quantization": calibration("{type: callable, callable: 'data.py:all_nan'}")},
        ["quantization.calibration.data", "input 'x' is entirely NaN/Inf in sample 0"],
    ),
    "callable-yields-ragged-lists": (
        {"quantization": calibration("{type: callable, callable: 'data.py:ragged'}")},
        ["quantization.calibration.data (batch 0): input 'x' is a list that is not an array"],
    ),
    "model-computes-nan-on-the-data": (
        {
            "model": model_section("models.py:make_log_of_negative"),
            "quantization": calibration("{type: files, path: good.npz}"),
        },
        ["quantization.calibration.data", "the model computes only NaN/Inf", "'/Log_output_0'"],
    ),
    "validation-npz-truncated": (
        {"validate": "validate: {samples: 16, data: {type: files, path: truncated.npz}}"},
        ["validate.data.path", "truncated.npz"],
    ),
    "validation-npz-with-0-samples": (
        {"validate": "validate: {samples: 16, data: {type: files, path: no-rows.npz}}"},
        ["validate.data", "yielded no samples"],
    ),
    "float16-declared-for-fp32-model": (
        {"model": model_section(dtype="float16")},
        ["model.inputs.0.dtype", "declared float16", "parameters are float32", "declare dtype: float32"],
    ),
    "checkpoint-keys-do-not-match": (
        {"model": model_section(extra="  checkpoint: other.pt\n")},
        [
            "model.checkpoint",
            "other.pt",
            "3 missing keys (fc1.bias, fc2.weight, fc2.bias)",
            "1 unexpected key (head.bias)",
            "1 shape mismatch (fc1.weight (checkpoint [3, 3], model [32, 16]))",
        ],
    ),
}


def write_inputs(folder: Path) -> None:
    import torch

    (folder / "models.py").write_text(MODEL_FILE + NAN_MODEL)
    (folder / "data.py").write_text(DATA_CODE)
    rng = np.random.default_rng(0)
    np.savez(folder / "good.npz", x=rng.standard_normal((32, 16)).astype(np.float32))
    whole = (folder / "good.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    (folder / "empty-file.npz").write_bytes(b"")
    np.savez(folder / "no-rows.npz", x=np.zeros((0, 16), np.float32))
    np.savez(folder / "all-nan.npz", x=np.full((32, 16), np.nan, np.float32))
    torch.save({"fc1.weight": torch.zeros(3, 3), "head.bias": torch.zeros(4)}, folder / "other.pt")


def start(folder: Path, name: str, sections: dict[str, str]) -> subprocess.CompletedProcess:
    recipe = folder / f"{name}.yaml"
    recipe.write_text(tiny_recipe_text(export=FAST_EXPORT, **sections))
    env = {k: v for k, v in os.environ.items() if k != "OPTCLI_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "optcli", "run", str(recipe), "--out", str(folder / f"out-{name}"), "-q"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Future]:
    folder = tmp_path_factory.mktemp("bad-data")
    write_inputs(folder)
    cases = {**CASES, "some-nan-warns": ({"quantization": calibration(SOME_NAN)}, [])}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(start, folder, name, sections) for name, (sections, _) in cases.items()}
        futures["__folder__"] = pool.submit(lambda: folder)
        yield futures


@pytest.mark.parametrize("name", list(CASES))
def test_user_mistake_exits_2_with_one_paragraph_naming_the_field(runs, name):
    result = runs[name].result()
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    message = " ".join(result.stderr.split())  # undo the terminal's line wrapping
    for expected in CASES[name][1]:
        assert expected in message, message
    assert "internal error" not in output.lower()
    assert "Traceback" not in output and 'File "' not in output, output
    # Nothing but the message (and its hint): no library warnings, no second error.
    assert result.stderr.startswith("error: "), result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        result.stderr.splitlines()[0]
    ], result.stderr
    report = json.loads((runs["__folder__"].result() / f"out-{name}" / "report.json").read_text())
    assert report["status"] == "error"
    assert report["error"]["exit_code"] == 2
    assert CASES[name][1][0] in report["error"]["message"]
    assert "\n" not in report["error"]["message"]  # one paragraph, whatever the library's text was


def test_some_nan_in_calibration_data_is_a_warning_not_an_error(runs):
    result = runs["some-nan-warns"].result()
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((runs["__folder__"].result() / "out-some-nan-warns" / "report.json").read_text())
    warnings = [w for w in report["warnings"] if "NaN/Inf" in w]
    assert warnings == ["quantization.calibration.data: input 'x' has 4 NaN/Inf of 128 values in samples 0-7"]


# ------------------------------------------------------------------ the mechanism, in-process (fast)


def stream_files(folder: Path, path: str) -> list[dict]:
    from helpers import resolver_for

    from optcli.calibration import stream
    from optcli.calibration.base import SourceContext
    from optcli.calibration.files import FilesSource

    ctx = SourceContext(resolver_for(("x", ["batch", 16])), folder, "validate.data")
    return list(stream(FilesSource(path=path), ctx, batch_size=4, samples=None))


def test_an_empty_file_in_a_glob_is_skipped_not_the_end_of_the_data(tmp_path):
    np.savez(tmp_path / "part-0.npz", x=np.zeros((0, 16), np.float32))
    np.savez(tmp_path / "part-1.npz", x=np.ones((6, 16), np.float32))
    batches = stream_files(tmp_path, "part-*.npz")
    assert [len(b["x"]) for b in batches] == [4, 2]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("cut.npy", "truncated-npy", "the file is shorter than its header says"),
        ("text.npz", b"x,y\n1,2\n", "it is not a .npy or .npz file (it starts with b'x,y\\n1,'"),
        ("empty.npy", b"", "the file is empty"),
    ],
)
def test_unreadable_files_name_the_file_and_the_cause(tmp_path, name, content, expected):
    from optcli.errors import UserInputError

    if content == "truncated-npy":
        np.save(tmp_path / "whole.npy", np.zeros((64, 16), np.float32))
        content = (tmp_path / "whole.npy").read_bytes()[:300]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UserInputError) as info:
        stream_files(tmp_path, name)
    message = str(info.value)
    assert message.startswith(f"validate.data.path: cannot read '{tmp_path / name}': ")
    assert expected in message
    assert "allow_pickle" not in message  # numpy's suggestion to unpickle a data file is not passed on
