#!/usr/bin/env bash
# Every GPU check in one go (see bench/gpu_check.py): torch CUDA fp32/fp16/bf16, CUDA graphs, and TensorRT /
# onnxruntime-gpu when installed, then the GPU-marked tests. Usage: bash bench/gpu_check.sh [MODEL_DIR] (default
# .gpu/model from `python -m bench.gpu_check --prepare .gpu`, carried to the GPU machine, else runs/wikiqa, else the
# base model). Both steps run even if the first fails (a device call is scarce); the exit status is the worst.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LOG="${OUT:-/tmp}/gpu_check.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
status=0
PYTHONPATH=. "$PY" -m bench.gpu_check ${1:+--model "$1"} 2>&1 | tee "$LOG" || status=$?
# the GPU-marked tests (this file only: the others import packages the GPU image may lack)
PYTHONPATH=. "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_path.py 2>&1 | tee -a "$LOG" || status=$?
exit "$status"
