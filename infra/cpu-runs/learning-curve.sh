#!/usr/bin/env bash
# The AG News learning curve of docs/benchmarks/2026-12-07-training.md (2-core CPU): MiniLM and
# mpnet-base, one epoch each, on stratified cuts of the union's title+desc rows, scored on the
# same fixed 2,000 test rows.
# Usage: bash infra/cpu-runs/learning-curve.sh [OUT]   (OUT default: ./runs/curve; ~1 h 40 min)
# Then:  .venv/bin/python -m retraining.analysis.learning_curve OUT/*.json --out curve.png --target 0.94
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT=$(mkdir -p "${1:-runs/curve}" && cd "${1:-runs/curve}" && pwd)
export NEWSFLOW_DATA_DIR="${NEWSFLOW_DATA_DIR:-$(cd .. && pwd)/shared/data}" NEWSFLOW_EVAL_LIMIT=2000
for rows in 2000 4000 8000; do
  for base in minilm mpnet-base; do
    tag=$base-$rows
    [[ -f $OUT/$tag.json ]] && continue   # done already: rerunning skips it
    lr=(); [[ $base == mpnet-base ]] && lr=(--lr 5e-5)
    NEWSFLOW_HOME=$OUT/home-$tag .venv/bin/newsflow train --dataset ag_news \
      --train-source union --train-rows $rows --base $base --epochs 1 "${lr[@]}" --no-promote \
      --json "$OUT/$tag.json" > "$OUT/$tag.log" 2>&1
    echo "$tag rc=$?"
  done
done
