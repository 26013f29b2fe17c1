#!/usr/bin/env bash
# Issue 26's first lever, measured on one held-out origin: the same recipe from scratch and from the ImageNet
# weights, side by side as two single-threaded processes (holdout_fold.sh each), on multisource index-v2 with one
# origin held out (default FOLD 3 = dfu-patches: healthy foot skin and ulcers from one hospital, the "clinic
# close-up" case). Usage:
#   WEIGHTS=../shared/weights/mobilenet_v3_small-imagenet-tfslim.pth FOLD=3 \
#     bash benchmarks/origins/pretrained_pair.sh NAME [hypoderm train flags...]
# Files: benchmarks/origins/screen/NAME-{scratch,imagenet}/holdout, packed into screen.json at the end.
set -euo pipefail
name=$1; shift
weights=${WEIGHTS:-../shared/weights/mobilenet_v3_small-imagenet-tfslim.pth}
python=${PYTHON:-.venv/bin/python}
here=$(dirname "$0")
for run in "$name-scratch" "$name-imagenet"; do
  $python benchmarks/summarize.py unpack benchmarks/origins/screen --under "$run"
done
PACK=0 bash "$here/holdout_fold.sh" "$name-scratch" "$@" --pretrained none &
p1=$!
PACK=0 bash "$here/holdout_fold.sh" "$name-imagenet" "$@" --pretrained "$weights" &
p2=$!
wait $p1; wait $p2
for run in "$name-scratch" "$name-imagenet"; do
  $python benchmarks/summarize.py pack benchmarks/origins/screen --under "$run"
done
echo "done: benchmarks/origins/screen.json, under $name-scratch/ and $name-imagenet/"
