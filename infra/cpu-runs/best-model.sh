#!/usr/bin/env bash
# The long CPU runs of docs/benchmarks/2026-12-07-training.md, in order; every step is skipped
# when its JSON exists and the trainings continue their checkpoints, so rerun this until it
# prints "all done".
#   1. mpnet-base, one epoch over every union row (all text formats), full AG News test
#   2. `newsflow bench` of its int8 graph (starts and stops the local stack)
#   3. a MiniLM student distilled from it (--teacher), same rows
# Usage: bash infra/cpu-runs/best-model.sh [OUT]   (OUT default: ./runs/best; ~3.5 h on 2 cores)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
OUT=$(mkdir -p "${1:-runs/best}" && cd "${1:-runs/best}" && pwd)
export NEWSFLOW_DATA_DIR="${NEWSFLOW_DATA_DIR:-$(cd .. && pwd)/shared/data}" NEWSFLOW_HOME=$OUT/home
field() { .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$@"; }
resume() { ls "$OUT"/home/checkpoints/"$1"-*/step-*.pt >/dev/null 2>&1 && echo --resume; }
rows=(--dataset ag_news --train-source union --text-format all --epochs 1 --no-promote)
if [[ ! -f $OUT/mpnet-all.json ]]; then
  # shellcheck disable=SC2046  # resume prints one flag or nothing
  .venv/bin/newsflow train "${rows[@]}" --base mpnet-base --lr 5e-5 $(resume mpnet-base) \
    --json "$OUT/mpnet-all.json" >> "$OUT/mpnet-all.log" 2>&1 || { echo "mpnet: see $OUT/mpnet-all.log"; exit 1; }
fi
if [[ ! -f $OUT/bench-mpnet-all.json ]]; then
  .venv/bin/newsflow stack up > "$OUT/stack.log" 2>&1
  .venv/bin/newsflow bench --model-dir "$(field "$OUT/mpnet-all.json" model_dir)" --articles 3000 \
    --offered 500 --json "$OUT/bench-mpnet-all.json" > "$OUT/bench-mpnet-all.log" 2>&1
  .venv/bin/newsflow stack down >> "$OUT/stack.log" 2>&1
fi
if [[ ! -f $OUT/student.json ]]; then
  # shellcheck disable=SC2046
  .venv/bin/newsflow train "${rows[@]}" --teacher "$(field "$OUT/mpnet-all.json" registered_version)" \
    $(resume minilm) --json "$OUT/student.json" >> "$OUT/student.log" 2>&1 || { echo "student: see $OUT/student.log"; exit 1; }
fi
echo "all done: $OUT"
