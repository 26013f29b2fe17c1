"""Time the not-skin gate on the bundled model's 128 x 128 crop: numpy (hypoderm.inference.ood) and, when node is
installed, the browser's JavaScript (static/js/preprocess.js) under Node. Prints medians over --runs.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nonskin/bench_gate.py
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from hypoderm.data import nonskin
from hypoderm.inference.ood import DEFAULT_GATE, gate_features, gate_score
from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array, resized_uint8

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    spec = PreprocessSpec.for_size(DEFAULT_GATE["size"])
    crop = center_crop_array(resized_uint8(nonskin.picture("wood", 1), spec), spec.size)
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        gate_score(gate_features(crop, DEFAULT_GATE), DEFAULT_GATE)
        times.append(time.perf_counter() - t)
    print(f"machine: {platform.machine()}, {os.cpu_count()} logical CPUs, python {platform.python_version()}, "
          f"numpy {np.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, crop {spec.size}x{spec.size}")
    print(f"numpy gate_features + gate_score: median {1000 * np.median(times):.2f} ms, "
          f"p90 {1000 * np.quantile(times, 0.9):.2f} ms over {args.runs} runs")
    node = shutil.which("node")
    if node is None:
        print("node not installed: JavaScript not timed")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(ROOT / "src" / "hypoderm" / "app" / "static" / "js" / "preprocess.js", Path(tmp) / "p.mjs")
        crop.tofile(Path(tmp) / "crop.bin")
        Path(tmp, "gate.json").write_text(__import__("json").dumps(DEFAULT_GATE))
        Path(tmp, "run.mjs").write_text(
            "import { gateFeatures, gateScore } from './p.mjs'; import fs from 'fs';\n"
            "const crop = new Uint8ClampedArray(fs.readFileSync('crop.bin'));\n"
            "const gate = JSON.parse(fs.readFileSync('gate.json'));\n"
            f"const t = []; for (let i = 0; i < {args.runs}; i++) {{ const s = performance.now();\n"
            f" gateScore(gateFeatures(crop, {spec.size}, {spec.size}, gate), gate); t.push(performance.now() - s); }}\n"
            "t.sort((a, b) => a - b); console.log(t[Math.floor(t.length / 2)].toFixed(2));\n")
        out = subprocess.run([node, "run.mjs"], cwd=tmp, capture_output=True, text=True, check=True)
        version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"node {version} gateFeatures + gateScore: median {out.stdout.strip()} ms over {args.runs} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
