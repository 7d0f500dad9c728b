#!/usr/bin/env bash
# The GPU check for issue #4, for a session that is lent a device machine (H100/H200). It runs
# the torch engine on CUDA (eager FP32 baseline on the same GPU, FP16 and BF16 autocast,
# torch.compile, torchao INT8 / FP8) on ResNet-50 and prints the latency/speedup table.
#
# Prepared but NOT yet run: no session so far had a device. The device image has torch 2.11 with
# CUDA, torchvision 0.26, onnx, onnxscript, onnxruntime (CPU), typer, rich, pyyaml. Before the
# call, download what it lacks as wheels into .whl/ (see the device README), e.g.:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl torchao pydantic pydantic-core
# and call with carry [".whl"] and timeout_s ~540. Expected duration: 4-7 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-runs/gpu-check}"
mkdir -p "$OUT_DIR"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT_DIR/gpu.txt"
python3 -m optcli doctor --json > "$OUT_DIR/doctor.json" || true
python3 -m optcli run recipes/resnet50-torch-gpu.yaml --out "$OUT_DIR/resnet50-torch-gpu" \
  --set benchmark.iterations=50 2>&1 | tee "$OUT_DIR/run.log"
cp "$OUT_DIR/resnet50-torch-gpu/report.md" "$OUT_DIR/report.md" 2>/dev/null || true
