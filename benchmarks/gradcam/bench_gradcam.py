"""What the Grad-CAM outputs cost: ONNX Runtime latency of an exported hypodermnet with and without
them, and the numpy heat map / photo-resolution overlay (hypoderm.inference.explain).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/gradcam/bench_gradcam.py [--size 224] [--runs 50]

Random weights (latency does not depend on them); one thread; batch 1. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

from hypoderm.export import export_onnx
from hypoderm.export.latency import ort_cpu_session
from hypoderm.inference import OnnxPredictor
from hypoderm.inference.explain import gradcam_map, overlay_on_photo
from hypoderm.inference.metadata import input_block
from hypoderm.inference.preprocess import PreprocessSpec
from hypoderm.models import create_model


def timed(fn, runs: int, warmup: int = 5) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts), float(np.percentile(ts, 90))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = create_model("hypodermnet", num_classes=2).eval()
    md = {"format": "hypoderm-onnx/1", "model_name": "hypodermnet", "version": "bench", "precision": "fp32",
          "class_names": ["normal_skin", "vitiligo"], "input": input_block(PreprocessSpec.for_size(args.size)),
          "output": {"name": "logits"}, "temperature": 1.0, "abstain_threshold": 0.5}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, md, Path(tmp) / "model.onnx")
        session = ort_cpu_session(path, threads=1)
        x = {"input": np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32)}
        rows = [("ONNX Runtime, logits only", *timed(lambda: session.run(["logits"], x), args.runs)),
                ("ONNX Runtime, logits + features + cam_weights", *timed(lambda: session.run(None, x), args.runs))]
        predictor = OnnxPredictor(path, threads=1)
        photo = Image.fromarray(np.random.default_rng(1).integers(0, 256, (3000, 4000, 3), dtype=np.uint8))
        small = photo.resize((400, 300))
        feats, weights = predictor.gradcam_outputs(small)
        rows.append((f"numpy gradcam_map at {args.size}x{args.size}",
                     *timed(lambda: gradcam_map(feats, weights, 1, args.size, args.size), args.runs)))
        rows.append(("numpy overlay on a 400x300 photo", *timed(
            lambda: overlay_on_photo(small, feats, weights, 1, predictor.spec), 20)))
        rows.append(("numpy overlay on a 4000x3000 photo", *timed(
            lambda: overlay_on_photo(photo, feats, weights, 1, predictor.spec), 3, warmup=1)))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; 1 thread; "
          f"onnxruntime {ort.__version__}, numpy {np.__version__}; hypodermnet random weights, {args.size} px, "
          f"batch 1; features {tuple(feats.shape)}")
    print("\n| step | median ms | p90 ms |\n|---|---|---|")
    for name, med, p90 in rows:
        print(f"| {name} | {med:.2f} | {p90:.2f} |")


if __name__ == "__main__":
    main()
