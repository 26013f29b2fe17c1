#!/usr/bin/env bash
# Every held-out origin of index-v2 for one recipe, as two single-threaded processes (holdout_fold.sh each) over
# two lists of folds (written to NAME/holdout-a and NAME/holdout-b; the folds are independent models, so the split
# changes nothing but the wall time), packed into screen.json once both are done:
#   FOLDS_A=0,1,4 FOLDS_B=5,6,7,8 bash benchmarks/origins/holdout_split_run.sh NAME [hypoderm train flags...]
# (folds are the sorted origins: 0 11k-hands, 1 abdomen-web, 2 biraja-web (vitiligo's only origin: untestable),
# 3 dfu-patches, 4 msid-mpox, 5 msid-normal, 6 msld-healthy, 7 msld-v1, 8 pad-ufes-20)
set -euo pipefail
name=$1; shift
python=${PYTHON:-.venv/bin/python}
here=$(dirname "$0")
$python benchmarks/summarize.py unpack benchmarks/origins/screen --under "$name"
PACK=0 SUB=holdout-a FOLD=${FOLDS_A:-0,1,4} bash "$here/holdout_fold.sh" "$name" "$@" &
p1=$!
PACK=0 SUB=holdout-b FOLD=${FOLDS_B:-5,6,7,8} bash "$here/holdout_fold.sh" "$name" "$@" &
p2=$!
wait $p1; wait $p2
$python benchmarks/summarize.py pack benchmarks/origins/screen --under "$name"
echo "done: benchmarks/origins/screen.json, under $name/"
