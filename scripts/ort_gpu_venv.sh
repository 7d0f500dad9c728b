#!/usr/bin/env bash
# A venv with the real onnxruntime-gpu wheel (and NOT the CPU onnxruntime: both install the same
# `onnxruntime` module and the last one wins, microsoft/onnxruntime#26996), numpy, onnx, and this
# checkout installed without its dependencies plus the light ones the onnxruntime_gpu engine imports
# (pydantic, rich, typer, pyyaml; no torch). Cached under $OPTCLI_TEST_CACHE (default
# ~/.cache/optcli-test): built once, then only this checkout is re-linked when it differs.
#
#   scripts/ort_gpu_venv.sh            # prints the venv's python on the last line
#   OPTCLI_TEST_CACHE=/some/dir ORT_GPU_SPEC='onnxruntime-gpu==1.31.1' scripts/ort_gpu_venv.sh
#
# Exit 0: ready. Exit 3: the package index is unreachable (tests skip on that). Other: a real failure.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${OPTCLI_TEST_CACHE:-$HOME/.cache/optcli-test}"
SPEC="${ORT_GPU_SPEC:-onnxruntime-gpu}"
PYTHON="${PYTHON:-python3}"
VENV="$CACHE/ort-gpu-venv"
STAMP="$VENV/.ready"
PY="$VENV/bin/python"
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)

# onnxruntime-gpu installed and the CPU onnxruntime absent.
BASE_CHECK='
import sys
from importlib import metadata
metadata.version("onnxruntime-gpu")
try:
    metadata.version("onnxruntime")
    sys.exit(1)
except metadata.PackageNotFoundError:
    pass
'
# shellcheck source=scripts/venv_lib.sh
. "$ROOT/scripts/venv_lib.sh"  # ours, install
# From / so that a checkout in the current folder is not what gets imported.
base_ready() { [ -f "$STAMP" ] && (cd / && "$PY" -c "$BASE_CHECK") >/dev/null 2>&1; }

if ! base_ready; then
  rm -rf "$VENV"
  mkdir -p "$CACHE"
  "$PYTHON" -m venv "$VENV"
  install "$SPEC" numpy onnx pydantic rich typer pyyaml
  "$PY" -c "$BASE_CHECK" || { echo "$VENV: onnxruntime-gpu missing or beside onnxruntime" >&2; exit 1; }
  touch "$STAMP"
fi
ours || install --no-deps -e "$ROOT"
ours || { echo "optcli in $VENV is not $ROOT" >&2; exit 1; }
echo "$PY"
