"""`hypoderm bench`: parameters, MACs/FLOPs, receptive field and batch-1 latency, side by side.

Counter: `torch.utils.flop_counter.FlopCounterMode` (PyTorch's built-in; counts convolutions and
matrix products, FLOPs = 2 x multiply-adds; BN, activations, pooling and attention scaling are not
counted). Latency: batch 1, eval mode, warm-up then the median and p90 of repeated runs; all
models are measured in the same process, round-robin, so background load affects them alike.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from hypoderm.export.latency import ort_cpu_session
from hypoderm.models import (
    MobileNetV3,
    canonical_name,
    count_parameters,
    create_model,
    is_table_model,
    list_models,
    mnv3s_spec,
    output_stride,
    receptive_field,
)

PRESETS = {
    "paper": ["hypodermnet", "mnv3s", "resnet50", "mobilenet_v2", "shufflenet_v2_x1_0", "efficientnet_b0",
              "densenet121"],
    "ablation": list_models(include_aliases=False, family="variant"),
    "design": ["hypodermnet", *list_models(include_aliases=False, family="design")],
    "all": list_models(include_aliases=False),
}


def parse_models(text: str) -> list[str]:
    names: list[str] = []
    for token in (t.strip() for t in text.split(",")):
        if not token:
            continue
        names += PRESETS.get(token, [token])
    for n in names:
        canonical_name(n)  # raises with the list of valid names
    return list(dict.fromkeys(names))


def count_flops(model: torch.nn.Module, size: int) -> int:
    x = torch.zeros(1, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_round_robin(runners: dict[str, Callable[[], Any]], warmup: int, runs: int) -> dict[str, list[float]]:
    """Run each callable `runs` times, interleaved, after `warmup` calls each; return ms per call."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(runs):
        for k, fn in runners.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1e3)
    return times


def export_onnx_bytes(model: torch.nn.Module, size: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        path = Path(tmp) / "model.onnx"  # torch.onnx.export documents a path, not a file object
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), path, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        return path.read_bytes()


def bench(models: list[str], size: int = 224, num_classes: int = 2, threads: int = 1, warmup: int = 10,
          runs: int = 50, use_onnx: bool = True, onnx_files: list[Path] | None = None) -> dict[str, Any]:
    torch.set_num_threads(threads)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        use_onnx = False
    rows: list[dict[str, Any]] = []
    torch_runners: dict[str, Callable[[], Any]] = {}
    ort_runners: dict[str, Callable[[], Any]] = {}
    x = torch.randn(1, 3, size, size)
    x_np = x.numpy()
    for name in models:
        model = create_model(name, num_classes=num_classes).eval()
        spec = mnv3s_spec(name) if is_table_model(name) else None
        flops = count_flops(model, size)
        feat = None
        if spec is not None and isinstance(model, MobileNetV3):  # a table model is a MobileNetV3
            with torch.no_grad():
                feat = model.forward_features(x)
        row: dict[str, Any] = {
            "model": name, "params": count_parameters(model), "macs": flops // 2, "flops": flops,
            "receptive_field": receptive_field(spec) if spec else None,
            "output_stride": output_stride(spec) if spec else None,
            "feature_map": f"{feat.shape[-2]}x{feat.shape[-1]}" if feat is not None else None,
        }
        if use_onnx:
            blob = export_onnx_bytes(model, size)
            row["onnx_bytes"] = len(blob)
            sess = ort_cpu_session(blob, threads)
            ort_runners[name] = functools.partial(sess.run, None, {"input": x_np})
        rows.append(row)
        torch_runners[name] = functools.partial(_no_grad_call, model, x)
    for path in onnx_files or []:
        sess = ort_cpu_session(str(path), threads)
        inp = sess.get_inputs()[0]
        side = inp.shape[-1] if isinstance(inp.shape[-1], int) else size
        arr = np.random.default_rng(0).standard_normal((1, 3, side, side)).astype(np.float32)
        key = f"{path.name}"
        rows.append({"model": key, "params": None, "macs": None, "flops": None, "receptive_field": None,
                     "output_stride": None, "feature_map": None, "onnx_bytes": path.stat().st_size})
        ort_runners[key] = functools.partial(sess.run, None, {inp.name: arr})
    t_torch = time_round_robin(torch_runners, warmup, runs)
    t_ort = time_round_robin(ort_runners, warmup, runs) if ort_runners else {}
    for row in rows:
        k = row["model"]
        for label, table in (("torch", t_torch), ("ort", t_ort)):
            vals = table.get(k)
            row[f"{label}_ms_median"] = round(statistics.median(vals), 3) if vals else None
            row[f"{label}_ms_p90"] = round(percentile(vals, 90), 3) if vals else None
    return {"env": environment(threads), "size": size, "num_classes": num_classes, "batch": 1,
            "warmup": warmup, "runs": runs,
            "flop_counter": "torch.utils.flop_counter.FlopCounterMode (FLOPs = 2 x MACs; conv + matmul only)",
            "rows": rows}


def _no_grad_call(model: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        model(x)


def environment(threads: int) -> dict[str, Any]:
    env = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
           "torch": torch.__version__, "platform": platform.platform(), "processor": _cpu_name(),
           "cpu_count": os.cpu_count(), "threads": threads}
    try:
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


COLUMNS = [("model", "model", "{}"), ("params", "params", "{:,}"), ("macs", "MMACs", None),
           ("flops", "GFLOPs", None), ("receptive_field", "RF px", "{}"), ("feature_map", "feat", "{}"),
           ("torch_ms_median", "torch ms", "{:.2f}"), ("torch_ms_p90", "p90", "{:.2f}"),
           ("ort_ms_median", "ORT ms", "{:.2f}"), ("ort_ms_p90", "p90", "{:.2f}")]


def format_table(result: dict[str, Any]) -> str:
    def cell(key: str, fmt: str | None, v: Any) -> str:
        if v is None:
            return "-"
        if key == "macs":
            return f"{v / 1e6:.1f}"
        if key == "flops":
            return f"{v / 1e9:.3f}"
        return fmt.format(v) if fmt else str(v)

    header = [c[1] for c in COLUMNS]
    body = [[cell(k, f, r.get(k)) for k, _, f in COLUMNS] for r in result["rows"]]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) + " |" for b in body]
    e = result["env"]
    lines.append(f"\ninput {result['size']}x{result['size']}, batch 1, {result['num_classes']} classes; "
                 f"{result['runs']} timed runs after {result['warmup']} warm-up, round-robin; threads={e['threads']}; "
                 f"{e['processor']} ({e['cpu_count']} logical CPUs); "
                 f"torch {e['torch']}, onnxruntime {e.get('onnxruntime', '-')}; "
                 f"FLOPs: {result['flop_counter']}; RF = theoretical receptive field of the last feature map "
                 f"(table models only); {e['date']}")
    return "\n".join(lines)
