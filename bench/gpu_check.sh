#!/usr/bin/env bash
# Every GPU check in one go (see bench/gpu_check.py): torch CUDA fp32/fp16/bf16, CUDA graphs, and TensorRT /
# onnxruntime-gpu when installed. Usage: bash bench/gpu_check.sh [MODEL_DIR] (default .gpu/model from
# `python -m bench.gpu_check --prepare .gpu`, carried to the GPU machine, else runs/wikiqa, else the base model)
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
"${PYTHON:-python3}" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
                               torch.cuda.is_available())"
PYTHONPATH=. "${PYTHON:-python3}" -m bench.gpu_check ${1:+--model "$1"} 2>&1 | tee "${OUT:-/tmp}/gpu_check.txt"
# the GPU-marked tests (this file only: the others import packages the GPU image may lack)
PYTHONPATH=. "${PYTHON:-python3}" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_path.py 2>&1 \
    | tee -a "${OUT:-/tmp}/gpu_check.txt"
