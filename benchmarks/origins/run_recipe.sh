#!/usr/bin/env bash
# One candidate recipe on the multisource set, the full protocol: every origin held out in turn
# (`hypoderm cv --hold-out-by origin`) and ordinary 5-fold CV on a split stratified by (class, origin), side by
# side as two single-threaded processes (on a 2-core machine two processes at one thread each train more images
# per second than one at two threads: benchmarks/origins/README.md). Usage:
#   bash benchmarks/origins/run_recipe.sh NAME [hypoderm train flags...]
# e.g. bash benchmarks/origins/run_recipe.sh crop-tone --recipe crop-tone
# The run's files are kept packed in benchmarks/origins/runs.json (+ runs.npz, benchmarks/summarize.py): unpacked
# first (so a re-run resumes its finished folds), packed again at the end.
set -euo pipefail
name=$1; shift
data=${DATA:-../shared/data/multisource/index.csv}
out=benchmarks/origins/runs/$name
hypoderm=${HYPODERM:-.venv/bin/hypoderm}
python=${PYTHON:-.venv/bin/python}
common=(--data "$data" --model hypodermnet --size 128 --epochs "${EPOCHS:-30}" --patience "${PATIENCE:-12}"
        --cache-dir "${CACHE:-/tmp/hypoderm-cache128}" --no-progress --bootstrap 200 "$@")
$python benchmarks/summarize.py unpack benchmarks/origins/runs --under "$name"
mkdir -p "$out"
[ -f "$out/cv-split.json" ] || $hypoderm data split "$data" --stratify-by origin --folds 5 --seed 0 --out "$out/cv-split.json"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
$hypoderm cv "${common[@]}" --hold-out-by origin --out "$out/holdout" > "$out/holdout.log" 2>&1 &
p1=$!
$hypoderm cv "${common[@]}" --split "$out/cv-split.json" --out "$out/cv" > "$out/cv.log" 2>&1 &
p2=$!
wait $p1; wait $p2
$python benchmarks/summarize.py pack benchmarks/origins/runs --under "$name"
echo "done: benchmarks/origins/runs.json, under $name/holdout/ and $name/cv/"
