#!/usr/bin/env bash
# `make wheel-check` (CI): a built wheel is the whole app. Build the wheel from this checkout, install it into a
# fresh venv outside the repository, start `hypoderm serve` on 127.0.0.1 from a folder outside it too, and check that
# /api/v1/model offers on-device inference and that the runtime it names (loader and WASM) answers 200: served from
# the wheel itself (hypoderm/app/vendor, setup.py), not from the checkout's node_modules.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${1:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hypoderm-wheel-check.XXXXXX")
SERVER=""
cleanup() { if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; fi; rm -rf "$WORK"; }
trap cleanup EXIT

# setuptools packs whatever an earlier build left in build/ (a stale runtime copy would hide a broken build hook)
rm -rf "$ROOT/build"
"$PY" -m pip wheel --no-deps --no-build-isolation -q -w "$WORK/dist" "$ROOT"
WHEEL=$(ls "$WORK"/dist/hypoderm-*.whl)
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
# The wheel with its own dependencies: only what `hypoderm serve` and `hypoderm predict` (ONNX) import, no PyTorch
# (pyproject.toml; the training stack is the `train` extra). A serve that needed anything else fails below.
"$VPY" -m pip install -q "$WHEEL"
if "$VPY" -c "import torch" 2>/dev/null; then
  echo "wheel-check: FAILED: installing the wheel installed torch (the app must not need the training stack)" >&2
  exit 1
fi
# without the training extras, a training command says how to get them (exit 2), not a traceback
set +e
TRAIN_ERR=$("$WORK/venv/bin/hypoderm" train --data "$WORK/none" 2>&1 >/dev/null)
TRAIN_RC=$?
set -e
if [ "$TRAIN_RC" != 2 ] || [[ "$TRAIN_ERR" != *"pip install 'hypoderm[train]'"* ]]; then
  echo "wheel-check: FAILED: hypoderm train without torch exited $TRAIN_RC: $TRAIN_ERR" >&2
  exit 1
fi
echo "wheel-check: ok: installed without torch; hypoderm train says: $TRAIN_ERR"
# the bundled model answers on the command line too
"$VPY" -c "from PIL import Image; Image.new('RGB', (320, 240), (196, 150, 120)).save('$WORK/photo.jpg')"
"$WORK/venv/bin/hypoderm" predict "$WORK/photo.jpg" --json >"$WORK/predict.json"
"$VPY" -c "import json, sys; r = json.load(open(sys.argv[1]))['results']; assert r[0]['status'] != 'error', r; \
print('wheel-check: ok: hypoderm predict answered', r[0]['status'])" "$WORK/predict.json"

PORT=$("$VPY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
cd "$WORK"
env -u HYPODERM_WEB_ASSETS HYPODERM_CACHE_DIR="$WORK/cache" \
  "$WORK/venv/bin/hypoderm" serve --host 127.0.0.1 --port "$PORT" >"$WORK/serve.log" 2>&1 &
SERVER=$!
if ! "$VPY" - "$PORT" "$WORK" <<'PYTHON'
import json, sys, time, urllib.request
from pathlib import Path

import hypoderm.app.web_runtime as runtime

port, work = sys.argv[1], Path(sys.argv[2])
base = f"http://127.0.0.1:{port}"
assert Path(runtime.__file__).is_relative_to(work / "venv"), runtime.__file__  # the installed wheel, not the checkout
assert (runtime.PACKAGED / "onnxruntime-web" / "LICENSE").is_file(), "the wheel carries no licence for the runtime"
for _ in range(600):
    try:
        urllib.request.urlopen(f"{base}/api/v1/health", timeout=2)
        break
    except OSError:
        time.sleep(0.1)
info = json.load(urllib.request.urlopen(f"{base}/api/v1/model", timeout=10))
b = info["browser_inference"]
assert b["available"], f"on-device inference not available: {b['reason']}"
for url in (b["script"], b["wasm_url"]):
    with urllib.request.urlopen(base + url, timeout=60) as r:
        assert r.status == 200 and r.read(), url
        print(f"wheel-check: GET {url} -> {r.status}")
print(f"wheel-check: ok: the installed wheel serves on-device inference ({b['runtime']})")
PYTHON
then
  echo "wheel-check: FAILED; hypoderm serve said:" >&2
  cat "$WORK/serve.log" >&2
  exit 1
fi
