#!/usr/bin/env bash
# The GPU check, for one CUDA GPU (H100/H200): runs the GPU recipes end to end and `--target gpu`,
# then prints one table (engine, precision, batch, p50, speedup vs eager FP32 on the same GPU,
# cosine) from their report.json files. Without CUDA it says why and exits 3, running nothing.
#
# Not yet run on a GPU. Budget: under 8 minutes on one H100/H200 (each run has its own timeout,
# so a slow run costs its table rows, not the whole check). The device image has torch with CUDA,
# torchvision, onnx, onnxscript, onnxruntime (CPU), typer, rich, pyyaml. Before the call,
# download what it lacks as wheels into .whl/, e.g.:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl torchao pydantic pydantic-core
# and call with carry [".whl"] and a timeout of ~540 s.
# Env: PYTHON (default python3), OUT (output folder), GPU_CHECK_RUN_TIMEOUT (seconds per run).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-runs/gpu-check}"
PER_RUN="${GPU_CHECK_RUN_TIMEOUT:-300}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1

# CUDA first: the same question optcli's plan asks (does PyTorch see a CUDA device?).
if ! reason=$("$PY" - <<'PYEOF'
import torch
if torch.version.cuda is None:
    print(f"this torch build ({torch.__version__}) has no CUDA support")
elif not torch.cuda.is_available():
    print(f"PyTorch (CUDA {torch.version.cuda}) sees no CUDA device")
PYEOF
); then
  echo "gpu_check: cannot import torch with $PY; nothing was run" >&2
  exit 3
fi
if [ -n "$reason" ]; then
  echo "gpu_check: CUDA is not available: $reason; nothing was run" >&2
  exit 3
fi
mkdir -p "$OUT_DIR"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv \
  | tee "$OUT_DIR/gpu.txt"
"$PY" -m optcli doctor --json > "$OUT_DIR/doctor.json" || true

worst=0
run() {  # run NAME ARGS...: one optcli run with its own time limit; exit 1 (a gate failed) still reports
  local name=$1; shift
  local start=$SECONDS code=0
  timeout "$PER_RUN" "$PY" -m optcli run "$@" --out "$OUT_DIR/$name" > "$OUT_DIR/$name.log" 2>&1 || code=$?
  echo "gpu_check: $name exit $code in $((SECONDS - start)) s (log: $OUT_DIR/$name.log)"
  if [ "$code" -ge 2 ] && [ "$code" -gt "$worst" ]; then worst=$code; fi
}
FAST=(--set benchmark.iterations=50 --set benchmark.warmup=10 --set validate.samples=128)
# 1. The recipe: eager FP16/BF16, torch.compile, torchao INT8/FP8 vs eager FP32 on the same GPU.
run resnet50-torch-gpu recipes/resnet50-torch-gpu.yaml "${FAST[@]}"
# 2. --target gpu on the same model: every GPU candidate (torch.compile max-autotune, AOTInductor,
#    TensorRT and ORT-GPU where installed), ranked; the recipe's own engines are left out (run 1).
run resnet50-target-gpu recipes/resnet50-torch-gpu.yaml --target gpu --set 'build=[]' "${FAST[@]}"

"$PY" scripts/gpu_table.py "$OUT_DIR"/resnet50-torch-gpu/report.json "$OUT_DIR"/resnet50-target-gpu/report.json \
  | tee "$OUT_DIR/table.txt"
exit "$worst"
