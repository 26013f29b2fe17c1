"""Which onnxruntime-web files the page runs the model with, and where an installed wheel carries them.

No imports beyond the standard library: `setup.py` reads this file at build time to copy the files from the
pinned npm package (node_modules, `make web`) into the wheel, with the licence, so that a pip-installed
hypoderm runs the model on the phone too (`hypoderm.app.server.find_web_assets` looks here last).
"""

from __future__ import annotations

from pathlib import Path

# Only the WASM build is served: the ESM loader, its worker/glue module and the SIMD+threads binary it loads
# (the other builds are WebGL/WebGPU/JSPI variants the page never uses).
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")

# Inside the package: vendor/onnxruntime-web/{dist/<ORT_FILES>, package.json (its version), LICENSE}. Only a built
# wheel has it; a source checkout serves its own node_modules.
VENDOR_DIR = "vendor"
PACKAGED = Path(__file__).resolve().parent / VENDOR_DIR
