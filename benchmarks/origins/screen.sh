#!/usr/bin/env bash
# Screening of a candidate recipe on two folds only: the abdomen-web origin held out (566 healthy photos from
# a source the model never saw) and fold 0 of the ordinary 5-fold CV, as two single-threaded processes.
# Recipes that pass go on to the full protocol (run_recipe.sh). Usage:
#   bash benchmarks/origins/screen.sh NAME [hypoderm train flags...]
# The run's files are kept packed in benchmarks/origins/screen.json (+ screen.npz, benchmarks/summarize.py):
# unpacked first (so a re-run resumes), packed again at the end.
set -euo pipefail
name=$1; shift
data=${DATA:-../shared/data/multisource/index.csv}
out=benchmarks/origins/screen/$name
common=(--data "$data" --model hypodermnet --size 128 --epochs "${EPOCHS:-30}" --patience "${PATIENCE:-15}"
        --cache-dir "${CACHE:-/tmp/hypoderm-cache128}" --no-progress --bootstrap 200 "$@")
.venv/bin/python benchmarks/summarize.py unpack benchmarks/origins/screen --under "$name"
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/hypoderm cv "${common[@]}" --hold-out-by origin --only-folds 1 --out "$out/holdout" > "$out/holdout.log" 2>&1 &
p1=$!
.venv/bin/hypoderm cv "${common[@]}" --only-folds 0 --out "$out/cv" > "$out/cv.log" 2>&1 &
p2=$!
wait $p1; wait $p2
.venv/bin/python benchmarks/summarize.py pack benchmarks/origins/screen --under "$name"
echo "done: benchmarks/origins/screen.json, under $name/"
