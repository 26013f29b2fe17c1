#!/usr/bin/env bash
# Ordinary 5-fold cross-validation of the bundled recipe (the flags scripts/train_bundled_model.sh prints with
# FLAGS_ONLY=1; MODEL, EPOCHS and PATIENCE override, 20 epochs / patience 8 as the held-out screens) on multisource
# index-v2, with the photo-style baseline on the same folds
# (issue 26's "ordinary CV macro-F1 at least 0.05 above the photo-style baseline"). The split is the bundled
# model's (5 folds stratified by class and origin, seed 0). Two single-threaded processes over FOLDS_A and FOLDS_B
# into one folder, then one pass that finds every fold done and writes summary.md / summary.json:
#   bash benchmarks/origins/ordinary_cv.sh [OUT]      (default benchmarks/origins/ordinary_cv/mnv3s-bundled)
set -euo pipefail
data=${DATA:-../shared/data/multisource/index-v2.csv}
out=${1:-benchmarks/origins/ordinary_cv/mnv3s-bundled}
hypoderm=${HYPODERM:-.venv/bin/hypoderm}
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[ -f "$out/split.json" ] || $hypoderm data split "$data" --stratify-by origin --folds 5 --seed 0 --out "$out/split.json"
mapfile -t recipe < <(FLAGS_ONLY=1 HYPODERM="$hypoderm" bash scripts/train_bundled_model.sh "$data")
[ "${#recipe[@]}" -gt 0 ] || { echo "scripts/train_bundled_model.sh printed no recipe" >&2; exit 1; }
run() {
  $hypoderm cv --data "$data" --split "$out/split.json" "${recipe[@]}" --model "${MODEL:-mnv3s}" \
    --epochs "${EPOCHS:-20}" --patience "${PATIENCE:-8}" --workers 0 --cache-dir "${CACHE:-/tmp/hypoderm-cache128}" \
    --no-progress --bootstrap 200 --out "$out" "$@"
}
run --only-folds "${FOLDS_A:-0,1,2}" > "$out/cv-a.log" 2>&1 &
p1=$!
run --only-folds "${FOLDS_B:-3,4}" > "$out/cv-b.log" 2>&1 &
p2=$!
wait $p1; wait $p2
run > "$out/cv.log" 2>&1
echo "done: $out/summary.md"
