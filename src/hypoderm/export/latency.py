"""ONNX Runtime latency of an exported model (torch-free), for `hypoderm bench` and benchmarks/export."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np


def ort_cpu_session(model: bytes | str | os.PathLike, threads: int | None = 1,
                    session_config: dict[str, str] | None = None) -> Any:
    """An ONNX Runtime CPU session set up for timing: all graph optimisations, `threads` intra-op
    threads (None or 0: ONNX Runtime's default), and no busy-waiting between runs: with several
    sessions timed round-robin, one session's spinning pool threads would steal the cores of the next
    (measured here: 2-thread latencies rose up to 5x in creation order). `session_config`: extra
    session config entries; None = what the model's metadata asks for (an INT8-weights model's
    weights are dequantised at load, as OnnxPredictor does), {} = none."""
    import onnxruntime as ort

    if session_config is None:
        session_config = {}
        if not isinstance(model, bytes):
            from hypoderm.inference.metadata import ModelLoadError, load_metadata
            from hypoderm.inference.metadata import session_config as needed_config

            with contextlib.suppress(ModelLoadError):  # a plain ONNX file without hypoderm metadata: none
                session_config = needed_config(load_metadata(model))

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in session_config.items():
        so.add_session_config_entry(key, value)
    source = model if isinstance(model, bytes) else str(Path(model))
    return ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])


def bench_onnx(path: str | os.PathLike, threads: int | None = 1, runs: int = 50, warmup: int = 5,
               batch: int = 1) -> dict[str, Any]:
    """Median and p90 wall-clock latency (ms) of one forward pass on ONNX Runtime's CPU provider.

    `threads`: intra-op threads (None or 0 = ONNX Runtime's default, all physical cores).
    The input is a fixed random tensor of the model's metadata size (latency does not depend on
    pixel values for these CNNs)."""
    import onnxruntime as ort

    from hypoderm.inference import load_metadata

    md = load_metadata(path)
    size = int(md["input"]["size"])
    sess = ort_cpu_session(path, threads)
    name = sess.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    for _ in range(warmup):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.quantile(times, 0.9)),
            "threads": int(threads) if threads else "default", "runs": runs, "batch": batch, "size": size,
            "precision": md.get("precision", "fp32"), "onnxruntime": ort.__version__}
