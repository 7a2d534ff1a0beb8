#!/usr/bin/env bash
# `fastrank train` on a GPU: the default recipe (ListNet, bf16 on CUDA, 3 epochs) from the base model on WikiQA
# train, evaluated on WikiQA test, as the README's first command runs it on a CPU. The GPU image has no `datasets`
# (and no base-model package, no ../shared), so the call carries them, prepared here:
#   PYTHONPATH=. python -m bench.gpu_check --prepare-train .gpu   # .gpu/base (fp16 copy) + .gpu/wikiqa train/test
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
#   run(command="bash bench/gpu_train.sh", carry=[".gpu/base", ".gpu/wikiqa", ".whl"])
# Writes $OUT/gpu_train.json (the train command's --json result) and $OUT/gpu_train.txt (its log).
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUTDIR="${OUT:-/tmp}"
[ -n "${SKIP_WHEELS:-}" ] || "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=".:/tmp/site" TQDM_DISABLE=1
"$PY" -c "import torch, pyarrow, datasets, transformers; print('torch', torch.__version__, 'pyarrow', \
pyarrow.__version__, 'datasets', datasets.__version__, 'transformers', transformers.__version__, \
torch.cuda.get_device_name())" 2>&1 | tee "$OUTDIR/gpu_train.txt"
start=$(date +%s)
"$PY" -m fastrank train --data .gpu/wikiqa/train.tokenized.jsonl --eval-data .gpu/wikiqa/test.jsonl \
    --base .gpu/base --out /tmp/gpu-run --bf16 true --json "$@" > "$OUTDIR/gpu_train.json" 2>> "$OUTDIR/gpu_train.txt"
status=$?
echo "fastrank train exit $status after $(( $(date +%s) - start )) s" | tee -a "$OUTDIR/gpu_train.txt"
tail -c 3000 "$OUTDIR/gpu_train.json"
exit "$status"
