#!/usr/bin/env bash
# Issue 26's first lever, measured on one held-out origin: the same recipe from scratch and from the ImageNet
# weights, side by side as two single-threaded processes, on multisource index-v2 with one origin held out
# (default fold 3 = dfu-patches: healthy foot skin and ulcers from one hospital, the "clinic close-up" case).
# Usage:
#   WEIGHTS=../shared/weights/mobilenet_v3_small-imagenet-tfslim.pth FOLD=3 \
#     bash benchmarks/origins/pretrained_pair.sh NAME [hypoderm train flags...]
# Files: benchmarks/origins/screen/NAME-{scratch,imagenet}/holdout, packed into screen.json at the end.
set -euo pipefail
name=$1; shift
data=${DATA:-../shared/data/multisource/index-v2.csv}
weights=${WEIGHTS:-../shared/weights/mobilenet_v3_small-imagenet-tfslim.pth}
python=${PYTHON:-.venv/bin/python}
common=(--data "$data" --model hypodermnet --size 128 --epochs "${EPOCHS:-20}" --patience "${PATIENCE:-8}"
        --cache-dir "${CACHE:-/tmp/hypoderm-cache128}" --no-progress --bootstrap 200 --hold-out-by origin
        --only-folds "${FOLD:-3}" "$@")
for run in "$name-scratch" "$name-imagenet"; do
  $python benchmarks/summarize.py unpack benchmarks/origins/screen --under "$run"
  mkdir -p "benchmarks/origins/screen/$run"
done
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/hypoderm cv "${common[@]}" --pretrained none --out "benchmarks/origins/screen/$name-scratch/holdout" \
  > "benchmarks/origins/screen/$name-scratch/holdout.log" 2>&1 &
p1=$!
.venv/bin/hypoderm cv "${common[@]}" --pretrained "$weights" --out "benchmarks/origins/screen/$name-imagenet/holdout" \
  > "benchmarks/origins/screen/$name-imagenet/holdout.log" 2>&1 &
p2=$!
wait $p1; wait $p2
for run in "$name-scratch" "$name-imagenet"; do
  $python benchmarks/summarize.py pack benchmarks/origins/screen --under "$run"
done
echo "done: benchmarks/origins/screen.json, under $name-scratch/ and $name-imagenet/"
