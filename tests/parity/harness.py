"""The one node harness of the parity tests: run the page's own modules (src/hypoderm/app/static/js, unchanged) on
inputs from Python and get their answer back as Python values.

    run_js("return m.ood.oodCheck(crop, 128, [2, 0, 0], ood, null);", crop=arr, ood={...})

`body` is the inside of an async JavaScript function; every module of static/js is loaded as `m.<name>` (the
module's file name without `.js`), and each keyword argument is a variable of the same name. Values travel as JSON,
except numpy arrays and typed arrays: a uint8 array becomes a Uint8ClampedArray (what the page holds), a float32
array a Float32Array, and a typed array returned comes back as a numpy array of its type. The modules are copied
into a temporary folder marked `"type": "module"` (so node runs them as the browser does, imports between them
included) beside stand-ins for the two browser objects i18n.js touches (localStorage, document).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hypoderm.app.state import STATIC_DIR

JS_DIR = STATIC_DIR / "js"
NODE = shutil.which("node")
# the modules a parity test may call: those that mirror a Python module, and i18n.js (the words of the verdicts)
MODULES = ("preprocess", "ood", "skincheck", "verdict", "i18n", "gradcam")

needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed: cannot run the page's JavaScript")

_TYPES = {"Uint8ClampedArray": np.uint8, "Uint8Array": np.uint8, "Float32Array": np.float32,
          "Float64Array": np.float64, "Int32Array": np.int32}

_RUNNER = """
globalThis.localStorage = { getItem: () => null, setItem: () => {} };
globalThis.document = { documentElement: {}, querySelectorAll: () => [] };
import fs from "fs";
const decode = (v) => {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === "object") {
    if ("__typed__" in v) {
      const bytes = Buffer.from(v.b64, "base64");
      const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      return new globalThis[v.__typed__](buf);
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(x)]));
  }
  return v;
};
const encode = (k, v) => (ArrayBuffer.isView(v)
  ? { __typed__: v.constructor.name, b64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64") }
  : v);
const m = {};
for (const name of MODULES) m[name] = await import(`./js/${name}.js`);
const inputs = decode(JSON.parse(fs.readFileSync(process.argv[2], "utf8")));
const body = fs.readFileSync(process.argv[3], "utf8");
const run = new Function("m", ...Object.keys(inputs), `return (async () => { ${body} })();`);
const out = await run(m, ...Object.values(inputs));
fs.writeFileSync(process.argv[4], JSON.stringify(out === undefined ? null : out, encode));
"""


@cache
def _workdir() -> Path:
    """A folder with a copy of static/js (as ES modules) and the runner, made once per test session."""
    root = Path(tempfile.mkdtemp(prefix="hypoderm-parity-"))
    shutil.copytree(JS_DIR, root / "js")
    (root / "package.json").write_text('{"type": "module"}\n')
    (root / "run.js").write_text(_RUNNER.replace("MODULES", json.dumps(list(MODULES))))
    return root


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        kind = {np.dtype(np.uint8): "Uint8ClampedArray", np.dtype(np.float32): "Float32Array",
                np.dtype(np.float64): "Float64Array"}[value.dtype]
        return {"__typed__": kind, "b64": base64.b64encode(np.ascontiguousarray(value).tobytes()).decode()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "__typed__" in value:
            return np.frombuffer(base64.b64decode(value["b64"]), _TYPES[value["__typed__"]]).copy()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def run_js(body: str, **inputs: Any) -> Any:
    """Run `body` in node with the page's modules (`m.<name>`) and `inputs` as variables; what it returns."""
    if NODE is None:
        pytest.skip("node is not installed: cannot run the page's JavaScript")
    root = _workdir()
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        call = Path(tmp)
        (call / "in.json").write_text(json.dumps(_encode(inputs)))
        (call / "body.js").write_text(body)
        res = subprocess.run([NODE, "run.js", str(call / "in.json"), str(call / "body.js"), str(call / "out.json")],
                             cwd=root, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        return _decode(json.loads((call / "out.json").read_text()))
