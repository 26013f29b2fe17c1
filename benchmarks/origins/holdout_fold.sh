#!/usr/bin/env bash
# One held-out origin, one recipe, one single-threaded process (a screen of a fine-tuning recipe):
#   FOLD=3 bash benchmarks/origins/holdout_fold.sh NAME [hypoderm train flags...]
# on multisource index-v2 (FOLD 3 = dfu-patches); files in benchmarks/origins/screen/NAME/holdout, packed into
# screen.json at the end. pretrained_pair.sh runs the from-scratch / ImageNet pair the same way.
set -euo pipefail
name=$1; shift
data=${DATA:-../shared/data/multisource/index-v2.csv}
python=${PYTHON:-.venv/bin/python}
$python benchmarks/summarize.py unpack benchmarks/origins/screen --under "$name"
mkdir -p "benchmarks/origins/screen/$name"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/hypoderm cv --data "$data" --model hypodermnet --size 128 --epochs "${EPOCHS:-20}" --patience "${PATIENCE:-8}" \
  --cache-dir "${CACHE:-/tmp/hypoderm-cache128}" --no-progress --bootstrap 200 --hold-out-by origin \
  --only-folds "${FOLD:-3}" "$@" --out "benchmarks/origins/screen/$name/holdout" \
  > "benchmarks/origins/screen/$name/holdout.log" 2>&1
$python benchmarks/summarize.py pack benchmarks/origins/screen --under "$name"
echo "done: benchmarks/origins/screen.json, under $name/"
