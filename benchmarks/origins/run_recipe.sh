#!/usr/bin/env bash
# One candidate recipe on the multisource set: held-out-origin folds and ordinary 5-fold CV, side by side,
# as two single-threaded processes (two at one thread each train faster than one at two threads on a
# 2-core machine: benchmarks/origins/README.md). Usage:
#   bash benchmarks/origins/run_recipe.sh NAME [hypoderm train flags...]
# e.g. bash benchmarks/origins/run_recipe.sh crop-tone --recipe crop-tone
set -euo pipefail
name=$1; shift
data=${DATA:-../shared/data/multisource/index.csv}
out=benchmarks/origins/runs/$name
common=(--data "$data" --model hypodermnet --size 128 --epochs "${EPOCHS:-40}" --patience "${PATIENCE:-15}"
        --cache-dir "${CACHE:-/tmp/hypoderm-cache128}" --no-progress "$@")
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/hypoderm cv "${common[@]}" --hold-out-by origin --out "$out/holdout" > "$out/holdout.log" 2>&1 &
p1=$!
.venv/bin/hypoderm cv "${common[@]}" --out "$out/cv" > "$out/cv.log" 2>&1 &
p2=$!
wait $p1; wait $p2
echo "done: $out/holdout/summary.md $out/cv/summary.md"
