#!/usr/bin/env bash
# One held-out-origin run of one recipe as one single-threaded process (a screen of a fine-tuning recipe):
#   FOLD=3 bash benchmarks/origins/holdout_fold.sh NAME [hypoderm train flags...]
# on multisource index-v2 (FOLD: one fold or a comma list; 3 = dfu-patches); files in
# benchmarks/origins/screen/NAME/$SUB (default holdout) and NAME/$SUB.log, unpacked from and packed into screen.json
# around the run. PACK=0 leaves both to the caller: pretrained_pair.sh and holdout_split_run.sh run two of these
# side by side and pack once both are done (two packs at once would race on screen.json).
set -euo pipefail
name=$1; shift
data=${DATA:-../shared/data/multisource/index-v2.csv}
python=${PYTHON:-.venv/bin/python}
sub=${SUB:-holdout}
out=benchmarks/origins/screen/$name
[ "${PACK:-1}" = 0 ] || $python benchmarks/summarize.py unpack benchmarks/origins/screen --under "$name"
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
.venv/bin/hypoderm cv --data "$data" --model hypodermnet --size 128 --epochs "${EPOCHS:-20}" --patience "${PATIENCE:-8}" \
  --cache-dir "${CACHE:-/tmp/hypoderm-cache128}" --no-progress --bootstrap 200 --hold-out-by origin \
  --only-folds "${FOLD:-3}" "$@" --out "$out/$sub" > "$out/$sub.log" 2>&1
[ "${PACK:-1}" = 0 ] || $python benchmarks/summarize.py pack benchmarks/origins/screen --under "$name"
echo "done: $out/$sub"
