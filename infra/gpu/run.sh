#!/bin/bash
# usage: bash infra/gpu/run.sh  (on the device machine)
# the GPU image has no install of the project: import it from this checkout
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv > $OUT/gpu.txt
python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__, torch.cuda.is_available())" >> $OUT/gpu.txt
N=${SHARDS:-8}
for i in $(seq 0 $((N-1))); do python3 infra/gpu/sweep.py $i/$N >> $OUT/log.txt 2>&1 & done
wait
