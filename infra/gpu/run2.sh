#!/bin/bash
# usage: T=420 bash infra/gpu/run2.sh  (on the device machine, after infra/gpu/prepare.sh here)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH="$PWD:/tmp/site" || exit
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1
for i in 0 1 2 3 4 5 6; do timeout ${T:-500} python3 infra/gpu/final.py $i >> $OUT/log2.txt 2>&1 & done
wait
