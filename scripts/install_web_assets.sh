#!/usr/bin/env bash
# Install what the web app needs beyond Python: onnxruntime-web (+ Swagger UI for /docs) from the
# npm registry, exactly as pinned in package-lock.json, into node_modules/ (served by `hypoderm serve`
# at /vendor/...; never from a CDN). With --chromium, also Debian's chromium for the e2e tests.
# A wheel built from this checkout carries these files itself (setup.py); HYPODERM_WEB_ASSETS may point at any
# other node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null; then
  echo "install_web_assets: npm is not installed (Debian: apt-get install -y nodejs npm)" >&2
  exit 1
fi
npm ci --no-audit --no-fund --ignore-scripts
test -f node_modules/onnxruntime-web/dist/ort.wasm.min.mjs || { echo "install_web_assets: onnxruntime-web dist files missing" >&2; exit 1; }
echo "install_web_assets: onnxruntime-web $(node -p "require('./node_modules/onnxruntime-web/package.json').version") in node_modules/"
if [[ "${1:-}" == "--chromium" ]]; then
  if [[ ! -x /usr/bin/chromium ]]; then
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-wqy-zenhei
  fi
  /usr/bin/chromium --version
fi
