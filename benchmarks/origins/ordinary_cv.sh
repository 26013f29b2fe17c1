#!/usr/bin/env bash
# Ordinary 5-fold cross-validation of the bundled recipe (scripts/train_bundled_model.sh's flags, 20 epochs /
# patience 8 as the held-out screens) on multisource index-v2, with the photo-style baseline on the same folds
# (issue 26's "ordinary CV macro-F1 at least 0.05 above the photo-style baseline"). The split is the bundled
# model's (5 folds stratified by class and origin, seed 0). Two single-threaded processes over FOLDS_A and FOLDS_B
# into one folder, then one pass that finds every fold done and writes summary.md / summary.json:
#   bash benchmarks/origins/ordinary_cv.sh [OUT]      (default benchmarks/origins/ordinary_cv/mnv3s-bundled)
set -euo pipefail
data=${DATA:-../shared/data/multisource/index-v2.csv}
shared=$(dirname "$data")/../..
out=${1:-benchmarks/origins/ordinary_cv/mnv3s-bundled}
hypoderm=${HYPODERM:-.venv/bin/hypoderm}
mkdir -p "$out"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
[ -f "$out/split.json" ] || $hypoderm data split "$data" --stratify-by origin --folds 5 --seed 0 --out "$out/split.json"
run() {
  $hypoderm cv --data "$data" --model "${MODEL:-mnv3s}" --split "$out/split.json" --size 128 \
    --recipe crop-tone --outlier-exposure 0.5 --outliers "$shared/data/nonskin/index.csv" \
    --pretrained "$shared/weights/mobilenet_v3_small-imagenet-tfslim.pth" --balance-by origin \
    --counterfactual normal_skin:vitiligo --abstain-target 0.85 --epochs "${EPOCHS:-20}" --patience "${PATIENCE:-8}" \
    --seed 0 --workers 0 --cache-dir "${CACHE:-/tmp/hypoderm-cache128}" --no-progress --bootstrap 200 \
    --out "$out" "$@"
}
run --only-folds "${FOLDS_A:-0,1,2}" > "$out/cv-a.log" 2>&1 &
p1=$!
run --only-folds "${FOLDS_B:-3,4}" > "$out/cv-b.log" 2>&1 &
p2=$!
wait $p1; wait $p2
run > "$out/cv.log" 2>&1
echo "done: $out/summary.md"
