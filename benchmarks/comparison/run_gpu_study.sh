#!/usr/bin/env bash
# The comparison study at full size on one CUDA GPU machine, in one prepared command:
#   1. one split file for every model (5 folds, seed 0, near-duplicate threshold 10: see benchmarks/data_audit),
#   2. every model's `hypoderm cv` in parallel processes (same recipe, same split, AMP on CUDA),
#   3. one `hypoderm compare` over the same folder: it finds every fold finished, trains nothing, and
#      writes the tables, the paired comparison, the plots and the latency columns (CPU, batch 1).
# CV_DEADLINE (seconds, optional) bounds step 2; models whose folds did not all finish by then are left
# out of step 3 and named in its log, so a time-boxed machine still returns a complete table of what ran.
#   4. OUT/models/ and OUT/logs/ packed into OUT/models.json (+ models.npz) and OUT/logs.json
#      (benchmarks/summarize.py); a packed OUT is unpacked first, so a re-run resumes its finished folds.
# usage: benchmarks/comparison/run_gpu_study.sh DATA OUT
# env: MODELS (space-separated), SIZE, EPOCHS, BATCH, PATIENCE, JOBS (parallel cv processes), CV_DEADLINE,
#      DEVICE, HYPODERM (the command, e.g. "python3 -m hypoderm.cli"), PYTHON (for summarize.py)
set -uo pipefail
DATA=$1
OUT=$2
SIZE=${SIZE:-224}
EPOCHS=${EPOCHS:-30}
BATCH=${BATCH:-16}
PATIENCE=${PATIENCE:-10}
JOBS=${JOBS:-15}
DEVICE=${DEVICE:-cuda}
HYPODERM=${HYPODERM:-hypoderm}
# the slowest first, so they start early
MODELS=${MODELS:-"densenet121 resnet50 efficientnet_b0 mobilenet_v2 shufflenet_v2_x1_0 \
hypodermnet mnv3s mnv3s-eca mnv3s-lrelu mnv3s-dil mnv3s-eca-lrelu mnv3s-eca-dil mnv3s-lrelu-dil \
hypodermnet-dil7 hypodermnet-ecaproj"}
PYTHON=${PYTHON:-python3}
SUMMARIZE="$(dirname "$0")/../summarize.py"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
$PYTHON "$SUMMARIZE" unpack "$OUT/models" "$OUT/logs"
mkdir -p "$OUT/logs"
t0=$(date +%s)
[ -f "$OUT/split.json" ] || $HYPODERM data split "$DATA" --folds 5 --seed 0 --near-threshold 10 --out "$OUT/split.json"
RECIPE=(--split "$OUT/split.json" --size "$SIZE" --epochs "$EPOCHS" --batch-size "$BATCH" --patience "$PATIENCE"
        --seed 0 --device "$DEVICE" --no-progress)
echo "recipe: ${RECIPE[*]}; models: $MODELS; $JOBS parallel"
export DATA OUT HYPODERM
export RECIPE_STR="${RECIPE[*]}"
DEADLINE=()
[ -n "${CV_DEADLINE:-}" ] && DEADLINE=(timeout "$CV_DEADLINE")
printf '%s\n' $MODELS | "${DEADLINE[@]}" xargs -P "$JOBS" -I{} bash -c \
  's=$(date +%s); $HYPODERM cv --data "$DATA" --model {} $RECIPE_STR --out "$OUT/models/{}" > "$OUT/logs/{}.log" 2>&1; \
   echo "{}: rc=$? $(( $(date +%s) - s ))s"'
echo "cross-validation of all models: $(( $(date +%s) - t0 ))s"
DONE=()
for m in $MODELS; do
  if [ -f "$OUT/models/$m/summary.json" ] && [ "$(ls "$OUT"/models/"$m"/fold*/metrics.json 2>/dev/null | wc -l)" = 5 ]; then
    DONE+=("$m")
  else
    echo "not finished, left out of the tables: $m"
  fi
done
[ ${#DONE[@]} -gt 0 ] || { echo "no model finished"; exit 1; }
$HYPODERM compare --data "$DATA" --models "$(IFS=,; echo "${DONE[*]}")" "${RECIPE[@]}" --out "$OUT" \
  --threads 1 --runs 30 > "$OUT/logs/compare.log" 2>&1
echo "compare: rc=$? total $(( $(date +%s) - t0 ))s"
$PYTHON "$SUMMARIZE" pack "$OUT/models" "$OUT/logs"
