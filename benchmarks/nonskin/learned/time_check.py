"""What the skin check adds to one diagnosis: `session.run` of the bundled model with the check in its graph
against the same model without it, ONNX Runtime (CPU, one thread), batch 1, 128 px, alternating, median of N.

    git show <commit before the check>:src/hypoderm/assets/model.onnx > /tmp/model_without_check.onnx
    OMP_NUM_THREADS=1 python benchmarks/nonskin/learned/time_check.py /tmp/model_without_check.onnx
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from hypoderm.inference import bundled_model


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("without", type=Path)
    ap.add_argument("--with-check", type=Path, default=bundled_model())
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    x = np.random.default_rng(0).normal(size=(1, 3, 128, 128)).astype(np.float32)
    sessions = {"without": session(args.without), "with": session(args.with_check)}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(10):
        for s in sessions.values():
            s.run(None, {"input": x})
    for _ in range(args.runs):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {"input": x})
            times[k].append(1000 * (time.perf_counter() - t))
    out = {k: {"median_ms": statistics.median(v), "p90_ms": float(np.quantile(v, 0.9))} for k, v in times.items()}
    out["added_ratio"] = (out["with"]["median_ms"] - out["without"]["median_ms"]) / out["without"]["median_ms"]
    out["bytes"] = {"without": args.without.stat().st_size, "with": args.with_check.stat().st_size}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
