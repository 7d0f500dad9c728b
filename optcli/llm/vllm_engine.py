"""`benchmark.engine: vllm`: vLLM in another interpreter, started as a subprocess with a timeout.

vLLM pins its own torch and compressed-tensors, which clash with the quantizer's; it never shares
this environment. The child loads each saved checkpoint folder, times a 1-token generation (time
to first token) and a full one (decode rate), and prints one JSON line.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from optcli.errors import MissingDependencyError, StageError

VLLM_HINT = (
    "create a separate environment for vLLM (python -m venv vllm-env && vllm-env/bin/pip install vllm) "
    "and set benchmark.python: vllm-env/bin/python"
)

CHILD = r"""
import json, statistics, sys, time
from vllm import LLM, SamplingParams
folder, prompt_len, new_tokens, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = LLM(model=folder, enforce_eager=True, max_model_len=prompt_len + new_tokens + 8)
prompt = {"prompt_token_ids": [(i * 7 + 3) % 100 + 2 for i in range(prompt_len)]}
def timed(tokens):
    params = SamplingParams(max_tokens=tokens, min_tokens=tokens, ignore_eos=True, temperature=0.0)
    start = time.perf_counter()
    out = llm.generate([prompt], params, use_tqdm=False)
    return time.perf_counter() - start, len(out[0].outputs[0].token_ids)
timed(new_tokens)
first = statistics.median(timed(1)[0] for _ in range(iterations))
full, made = timed(new_tokens)
full = statistics.median([full] + [timed(new_tokens)[0] for _ in range(iterations - 1)])
steps = max(made - 1, 1)
print("OPTCLI_RESULT " + json.dumps({"ttft_ms": first * 1000, "prefill_tokens_per_s": prompt_len / first,
    "decode_tokens_per_s": steps / max(full - first, 1e-9), "prompt_tokens": prompt_len,
    "new_tokens": made, "iterations": iterations}))
"""


def interpreter(python: str | None, base_dir: Path) -> Path:
    """The configured interpreter, checked to import vllm (exit 3 with the fix otherwise)."""
    if not python:
        raise MissingDependencyError("benchmark.engine vllm: benchmark.python is not set", hint=VLLM_HINT)
    path = Path(python).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise MissingDependencyError(f"benchmark.python: '{path}' does not exist", hint=VLLM_HINT)
    try:
        probe = subprocess.run(
            [str(path), "-c", "import vllm; print(vllm.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingDependencyError(f"benchmark.python: '{path}' cannot run: {exc}", hint=VLLM_HINT) from exc
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise MissingDependencyError(f"benchmark.python: '{path}' cannot import vllm: {last}", hint=VLLM_HINT)
    return path


def run_vllm(
    python: Path, folder: Path, prompt_tokens: int, new_tokens: int, iterations: int, timeout_s: float
) -> dict[str, Any]:
    args = [str(python), "-c", CHILD, str(folder), str(prompt_tokens), str(new_tokens), str(iterations)]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise StageError(
            f"benchmark: vLLM on '{folder}' did not finish within benchmark.timeout_s={timeout_s:g}s"
        ) from exc
    for line in done.stdout.splitlines():
        if line.startswith("OPTCLI_RESULT "):
            return json.loads(line[len("OPTCLI_RESULT ") :])
    tail = " | ".join(done.stderr.strip().splitlines()[-3:]) or "no output"
    raise StageError(f"benchmark: vLLM could not run '{folder}' (exit {done.returncode}): {tail}")
