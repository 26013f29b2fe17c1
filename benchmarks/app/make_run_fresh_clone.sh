#!/usr/bin/env bash
# Issue 29: how long `make run` on a fresh clone takes until the server answers, and how big the serving environment
# is. Clones this checkout's HEAD into a temporary folder, starts `make run` on a free port, polls /api/v1/health every
# 0.2 s, prints the seconds from the start of `make run` to the first answer, the sizes of .venv and node_modules and
# the load average, then stops the server and removes the clone (KEEP=1 keeps it).
#
#     bash benchmarks/app/make_run_fresh_clone.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLONE=$(mktemp -d "${TMPDIR:-/tmp}/hypoderm-fresh.XXXXXX")
MAKE_PID=""
cleanup() {
  if [ -n "$MAKE_PID" ]; then
    for child in $(pgrep -P "$MAKE_PID" || true); do kill "$child" 2>/dev/null || true; done  # hypoderm serve
    kill "$MAKE_PID" 2>/dev/null || true
  fi
  if [ -z "${KEEP:-}" ]; then rm -rf "$CLONE"; else echo "clone kept in $CLONE"; fi
}
trap cleanup EXIT

git clone -q "$ROOT" "$CLONE"
PORT=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); pip cache: $(du -sh "$(python3 -m pip cache dir 2>/dev/null \
  || echo ~/.cache/pip)" 2>/dev/null | cut -f1)"
cd "$CLONE"
start=$(date +%s.%N)
make run PORT="$PORT" >"$CLONE/make-run.log" 2>&1 &
MAKE_PID=$!
answered=""
for _ in $(seq 1 3000); do  # at most ~10 minutes
  if curl -fs "http://127.0.0.1:$PORT/api/v1/health" >/dev/null 2>&1; then
    answered=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
    break
  fi
  if ! kill -0 "$MAKE_PID" 2>/dev/null; then
    echo "make run stopped:" >&2; grep -v "WARNING: Location" "$CLONE/make-run.log" >&2; exit 1
  fi
  sleep 0.2
done
[ -n "$answered" ] || { echo "no answer in 10 minutes" >&2; exit 1; }
echo "the server answered ${answered} s after make run started"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo ".venv: $(du -sm .venv | cut -f1) MB; node_modules: $(du -sm node_modules | cut -f1) MB"
if .venv/bin/python -c "import torch" 2>/dev/null; then echo "torch: installed"; else echo "torch: not installed"; fi
