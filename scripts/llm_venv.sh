#!/usr/bin/env bash
# A venv for `quantization.tool: llmcompressor`. llmcompressor 0.14.0.1 pins transformers>=5.15,<=5.17
# and compressed-tensors==0.19.0, so it cannot share an environment with optcli[llm] (transformers
# 5.24, compressed-tensors 0.20). This one holds CPU torch (installed first, then held by a constraint
# so no dependency can replace it), this checkout as an editable install with its [llmcompressor]
# extra, and exactly the pins below. Cached under $OPTCLI_TEST_CACHE (default ~/.cache/optcli-test):
# built once, then only this checkout is re-linked when it differs.
#
#   scripts/llm_venv.sh                # prints the venv's python on the last line
#   OPTCLI_TEST_CACHE=/some/dir TORCH_SPEC='torch==2.13.0' scripts/llm_venv.sh
#
# Exit 0: ready. Exit 3: the package index is unreachable (tests skip on that). Other: a real failure.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${OPTCLI_TEST_CACHE:-$HOME/.cache/optcli-test}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PINS=(llmcompressor==0.14.0.1 transformers==5.17.0 "compressed-tensors==0.19.*")
PYTHON="${PYTHON:-python3}"
VENV="$CACHE/llmcompressor-venv"
STAMP="$VENV/.ready"
PY="$VENV/bin/python"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
START=$SECONDS

# The pinned versions are installed and torch is the one asked for (metadata only: fast).
BASE_CHECK='
import sys
from importlib import metadata
assert metadata.version("llmcompressor") == "0.14.0.1", metadata.version("llmcompressor")
assert metadata.version("compressed-tensors").startswith("0.19."), metadata.version("compressed-tensors")
assert metadata.version("torch").split("+")[0] == sys.argv[1].split("==")[-1], metadata.version("torch")
'
# Once, after installing: the set imports together (oneshot and the GPTQ modifier included).
IMPORT_CHECK='from llmcompressor import oneshot; from llmcompressor.modifiers.gptq import GPTQModifier'
# shellcheck source=scripts/venv_lib.sh
. "$ROOT/scripts/venv_lib.sh"  # ours, install
# From / so that a checkout in the current folder is not what gets imported.
base_ready() { [ -f "$STAMP" ] && (cd / && "$PY" -c "$BASE_CHECK" "$TORCH_SPEC") >/dev/null 2>&1; }

if ! base_ready; then
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PYTHON" -m venv "$VENV"
  install "$TORCH_SPEC"
  echo "$TORCH_SPEC" >"$VENV/torch-constraint.txt"
  install -c "$VENV/torch-constraint.txt" -e "$ROOT[llmcompressor]" "${PINS[@]}"
  (cd / && "$PY" -c "$BASE_CHECK" "$TORCH_SPEC" && LLM_COMPRESSOR_LOG_LEVEL=ERROR "$PY" -c "$IMPORT_CHECK") ||
    { echo "$VENV: the pinned set is not installed or does not import" >&2; exit 1; }
  touch "$STAMP"
fi
ours || install --no-deps -e "$ROOT"
ours || { echo "optcli in $VENV is not $ROOT" >&2; exit 1; }
echo "$VENV ready in $((SECONDS - START)) s" >&2
echo "$PY"
