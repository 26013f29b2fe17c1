#!/usr/bin/env bash
# Every held-out origin of index-v2 for one recipe, as two single-threaded processes over two lists of folds
# (written to NAME/holdout-a and NAME/holdout-b; the folds are independent models, so the split changes nothing
# but the wall time), packed into screen.json once both are done:
#   FOLDS_A=0,1,4 FOLDS_B=5,6,7,8 bash benchmarks/origins/holdout_split_run.sh NAME [hypoderm train flags...]
# (folds are the sorted origins: 0 11k-hands, 1 abdomen-web, 2 biraja-web (vitiligo's only origin: untestable),
# 3 dfu-patches, 4 msid-mpox, 5 msid-normal, 6 msld-healthy, 7 msld-v1, 8 pad-ufes-20)
set -euo pipefail
name=$1; shift
data=${DATA:-../shared/data/multisource/index-v2.csv}
python=${PYTHON:-.venv/bin/python}
out=benchmarks/origins/screen/$name
$python benchmarks/summarize.py unpack benchmarks/origins/screen --under "$name"
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
common=(--data "$data" --model hypodermnet --size 128 --epochs "${EPOCHS:-20}" --patience "${PATIENCE:-8}"
        --cache-dir "${CACHE:-/tmp/hypoderm-cache128}" --no-progress --bootstrap 200 --hold-out-by origin "$@")
.venv/bin/hypoderm cv "${common[@]}" --only-folds "${FOLDS_A:-0,1,4}" --out "$out/holdout-a" > "$out/holdout-a.log" 2>&1 &
p1=$!
.venv/bin/hypoderm cv "${common[@]}" --only-folds "${FOLDS_B:-5,6,7,8}" --out "$out/holdout-b" > "$out/holdout-b.log" 2>&1 &
p2=$!
wait $p1; wait $p2
$python benchmarks/summarize.py pack benchmarks/origins/screen --under "$name"
echo "done: benchmarks/origins/screen.json, under $name/"
