"""The LLM pipeline's parts: text sources, the disjointness check, the metrics on known logits, and
compressed-tensors checkpoints saved and loaded back in a fresh process."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from optcli.errors import UserInputError
from optcli.llm import checkpoint, evaluate
from optcli.llm.quantize import quantize
from optcli.llm.text_data import (
    JsonlSource,
    TextCallableSource,
    TextFileSource,
    check_disjoint,
    read_texts,
    token_windows,
)

EXAMPLE = Path(__file__).parent.parent / "optcli" / "examples" / "tiny_llama"
SMALL = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "head_dim": 32}


def small_model_folder(root: Path) -> Path:
    """The example's tokenizer with a smaller config (2 layers, hidden 128): fast to quantize."""
    folder = root / "small"
    folder.mkdir()
    config = json.loads((EXAMPLE / "config.json").read_text()) | SMALL
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(EXAMPLE / name, folder / name)
    return folder


def texts(n: int, start: int = 0) -> list[str]:
    return [f"Sentence number {i} talks about the weather in town {i % 7}." for i in range(start, start + n)]


def test_text_sources_file_jsonl_callable(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\nsecond line\n", encoding="utf-8")
    assert read_texts(TextFileSource(path="a.txt"), tmp_path, "f") == ["first line", "second line"]
    assert read_texts(TextFileSource(path="a.txt", split="whole"), tmp_path, "f") == [
        "first line\n\nsecond line\n"
    ]
    (tmp_path / "b.jsonl").write_text('{"text": "one"}\n\n{"text": "two", "id": 2}\n', encoding="utf-8")
    assert read_texts(JsonlSource(path="b.jsonl"), tmp_path, "f") == ["one", "two"]
    (tmp_path / "gen.py").write_text("def gen(n):\n    yield from (f't{i}' for i in range(n))\n")
    assert read_texts(TextCallableSource(callable="gen.py:gen", kwargs={"n": 3}), tmp_path, "f") == [
        "t0",
        "t1",
        "t2",
    ]


def test_text_source_errors_name_the_field(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "no text key"}\n', encoding="utf-8")
    with pytest.raises(
        UserInputError, match=r"validate.data.field: .*bad.jsonl:2 has no string under 'text'"
    ):
        read_texts(JsonlSource(path="bad.jsonl"), tmp_path, "validate.data")
    with pytest.raises(UserInputError, match=r"validate\.data\.path: cannot read"):
        read_texts(TextFileSource(path="missing.txt"), tmp_path, "validate.data")
    (tmp_path / "gen.py").write_text("def nums():\n    return [1, 2]\n")
    with pytest.raises(UserInputError, match="yielded a int, expected strings"):
        read_texts(TextCallableSource(callable="gen.py:nums"), tmp_path, "validate.data")


def test_windows_and_disjointness():
    tokenizer = checkpoint.load_tokenizer(EXAMPLE)
    calibration, validation = texts(40), texts(40, start=40)
    cal = token_windows(calibration, tokenizer, 32, 4, "c")
    val = token_windows(validation, tokenizer, 32, 4, "v")
    assert cal.shape == val.shape == (4, 32) and cal.dtype == torch.int64
    check_disjoint(calibration, validation, cal, val)  # disjoint: no error
    with pytest.raises(UserInputError, match=r"validate.data: 1 text\(s\) also in quantization.calibration"):
        check_disjoint(calibration, [*validation, calibration[3]], cal, val)
    with pytest.raises(UserInputError, match="token window"):
        check_disjoint(calibration, validation, cal, torch.cat([val, cal[:1]]))
    with pytest.raises(UserInputError, match="fewer than one window of seq_len 4096"):
        token_windows(["short"], tokenizer, 4096, 1, "validate.data")


def test_metrics_on_known_logits():
    vocab = 8
    targets = torch.tensor([[1, 2, 3]])
    uniform = evaluate.Logits(torch.log_softmax(torch.zeros(1, 3, vocab), -1), targets)
    assert evaluate.perplexity(uniform) == pytest.approx(vocab)  # uniform: ppl = vocab size
    assert evaluate.mean_kl(uniform, uniform) == pytest.approx(0.0, abs=1e-12)
    # Two classes, P = (0.9, 0.1), Q = (0.5, 0.5): KL = 0.9 ln 1.8 + 0.1 ln 0.2.
    p = evaluate.Logits(torch.log(torch.tensor([[[0.9, 0.1]]])), torch.tensor([[0]]))
    q = evaluate.Logits(torch.log(torch.tensor([[[0.5, 0.5]]])), torch.tensor([[0]]))
    assert evaluate.mean_kl(p, q) == pytest.approx(0.9 * math.log(1.8) + 0.1 * math.log(0.2))
    assert evaluate.perplexity(p) == pytest.approx(1 / 0.9)
    # Agreement: argmax per position, 2 of 3 the same.
    a = torch.log_softmax(torch.tensor([[[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0]]]), -1)
    b = torch.log_softmax(torch.tensor([[[3.0, 0, 0], [0, 3.0, 0], [3.0, 0, 0]]]), -1)
    la, lb = evaluate.Logits(a, torch.zeros(1, 3, dtype=torch.long)), evaluate.Logits(b, torch.zeros(1, 3))
    assert evaluate.token_agreement(la, lb) == pytest.approx(2 / 3)
    metrics = evaluate.compare(p, q, baseline_ppl=evaluate.perplexity(p))
    assert metrics["ppl_increase"] == pytest.approx((1 / 0.5) / (1 / 0.9) - 1)


LOAD_BACK = """
import json, sys, torch
from transformers import AutoModelForCausalLM
ids = torch.load(sys.argv[1])
out = {}
for folder in sys.argv[2:]:
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        out[folder] = model(input_ids=ids).logits.tolist()
print(json.dumps(out))
"""


def test_checkpoints_saved_with_quantization_config_load_back_in_a_fresh_process(tmp_path):
    source = small_model_folder(tmp_path)
    ids = torch.randint(0, 512, (1, 16), generator=torch.Generator().manual_seed(0))
    torch.save(ids, tmp_path / "ids.pt")
    expected, folders = {}, []
    formats = {"FP8_DYNAMIC": "float-quantized", "W8A8": "int-quantized", "W4A16": "pack-quantized"}
    for scheme, form in formats.items():
        model = checkpoint.load_model(source, seed=0)
        with torch.no_grad():
            fp32 = model(input_ids=ids).logits
        done = quantize(model, scheme, "compressed-tensors", ["lm_head"], None)
        assert done.quantized_modules == 2 * 7  # q, k, v, o, gate, up, down per layer; lm_head ignored
        with torch.no_grad():
            expected[scheme] = model(input_ids=ids).logits  # the in-memory fake-quantized model
        assert not torch.equal(expected[scheme], fp32)  # quantization changed something
        folder = tmp_path / scheme
        folder.mkdir()
        config = checkpoint.save_compressed(model, source, folder)
        assert config["quant_method"] == "compressed-tensors" and config["format"] == form
        assert config["ignore"] == ["lm_head"]
        assert (folder / "tokenizer.json").is_file() and (folder / "model.safetensors").is_file()
        folders.append(str(folder))
    sizes = {Path(f).name: checkpoint.weight_bytes(Path(f)) for f in folders}
    assert sizes["W4A16"] < sizes["W8A8"] and sizes["W4A16"] < sizes["FP8_DYNAMIC"]
    done = subprocess.run(
        [sys.executable, "-c", LOAD_BACK, str(tmp_path / "ids.pt"), *folders],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    for scheme, folder in zip(formats, folders):
        torch.testing.assert_close(torch.tensor(loaded[folder]), expected[scheme], atol=1e-4, rtol=1e-4)
