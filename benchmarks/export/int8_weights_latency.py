"""Native ONNX Runtime timing of fp32 vs weight-only INT8 (and static INT8), call by call in one process.

Weight-only INT8 stores the weights as INT8 and, with `session.disable_quant_qdq` = "1", ONNX Runtime
folds them back to fp32 when the session is created: the graph it runs should be the fp32 graph, so
`session.run` should cost the same, and only session creation pays the dequantisation. This measures
both, CPU provider, `--threads` intra-op threads, batch 1 at each model's own input size, all outputs (as the
app's page asks):

- run: the models are called in turn (call i of every model before call i+1 of any, the order rotated
  each call), `--rounds` x `--runs` calls each, so load spikes on this shared machine hit all alike;
  per model the median of round medians, and the median over calls of (model's call i / first model's
  call i), the paired ratio, which is the robust number when the machine is noisy;
- create: `InferenceSession` creation from the file bytes in memory (graph optimisation, constant
  folding), `--creates` times per model, alternating, median.

A name ending in `:plain` loads the model without the session config its metadata asks for (to see
what the option buys). `hypoderm.export.latency.ort_cpu_session` sets the sessions up (no spinning).

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/export/int8_weights_latency.py \\
        src/hypoderm/assets/model.onnx /tmp/m/model.int8w.onnx /tmp/m/model.int8w.onnx:plain --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from hypoderm.export.latency import ort_cpu_session
from hypoderm.inference import load_metadata


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="ONNX files; PATH:plain = without the metadata's session config")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--creates", type=int, default=10)
    args = ap.parse_args()
    # keyed "i:PATH", so the same file twice (an A/A control, the noise floor) is two entries
    models = [(f"{i}:{m}", Path(m.removesuffix(":plain")), m.endswith(":plain")) for i, m in enumerate(args.models)]
    blobs = {name: path.read_bytes() for name, path, _ in models}
    # each model gets an input of its own metadata's size (models of several input sizes can be timed together)
    sizes = {name: int(load_metadata(path)["input"]["size"]) for name, path, _ in models}

    def create(name: str, path: Path, plain: bool) -> object:
        # bytes carry no metadata: pass the config the file's metadata asks for (or none with :plain)
        md = load_metadata(path)
        config = {} if plain else (md.get("quantization") or {}).get("session_config", {})
        return ort_cpu_session(blobs[name], args.threads, session_config=config)

    create_ms: dict[str, list[float]] = {name: [] for name, _, _ in models}
    for _ in range(args.creates):
        for name, path, plain in models:
            t0 = time.perf_counter()
            create(name, path, plain)
            create_ms[name].append((time.perf_counter() - t0) * 1e3)
    sessions = [create(name, path, plain) for name, path, plain in models]
    feeds = [{s.get_inputs()[0].name: np.random.default_rng(0).standard_normal((1, 3, sizes[name], sizes[name]))
              .astype(np.float32)} for s, (name, _, _) in zip(sessions, models, strict=True)]
    for s, f in zip(sessions, feeds, strict=True):
        for _ in range(20):
            s.run(None, f)
    n = len(sessions)
    times = [[[0.0] * args.runs for _ in range(args.rounds)] for _ in range(n)]
    for r in range(args.rounds):
        for i in range(args.runs):
            for j in range(n):
                k = (i + j) % n  # rotate who goes first
                t0 = time.perf_counter()
                sessions[k].run(None, feeds[k])
                times[k][r][i] = (time.perf_counter() - t0) * 1e3
    out = {}
    for k, (name, path, _) in enumerate(models):
        flat = [v for rnd in times[k] for v in rnd]
        out[name] = {"bytes": path.stat().st_size, "precision": load_metadata(path).get("precision"),
                     "input": f"1x3x{sizes[name]}x{sizes[name]}",
                     "run_median_ms": round(statistics.median(statistics.median(rnd) for rnd in times[k]), 4),
                     "run_p90_ms": round(float(np.percentile(flat, 90)), 4),
                     "round_medians_ms": [round(statistics.median(rnd), 4) for rnd in times[k]],
                     "paired_ratio_to_first": round(statistics.median(
                         a / b for ra, rb in zip(times[k], times[0], strict=True)
                         for a, b in zip(ra, rb, strict=True)), 4),
                     "create_median_ms": round(statistics.median(create_ms[name]), 2)}
    import onnxruntime as ort

    print(json.dumps({"threads": args.threads, "runs": args.runs, "rounds": args.rounds,
                      "creates": args.creates, "onnxruntime": ort.__version__,
                      "cpu": platform.processor() or platform.machine(), "load_average": os.getloadavg(),
                      "models": out}, indent=1))


if __name__ == "__main__":
    main()
