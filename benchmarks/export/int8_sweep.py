"""INT8 settings sweep for one exported model: which post-training quantisation keeps its accuracy.

Protocol (issue 15, item 2):
- fp32 reference: the exported ONNX model (default: the bundled `src/hypoderm/assets/model.onnx`).
- held-out photos: the split's validation fold (default fold 1 of runs/bundled/split.json: the
  photos that neither trained nor calibrated the model's weights), as the usual centre crop, plus
  `hypoderm.engine.styleshift.closeups` (3 seeded close-ups per photo, like the square a user frames
  in the app).
- calibration: photos of the *training* folds only (centre crops; `+closeups` adds their close-ups).
- each setting: `hypoderm.export.int8.quantize_int8`, then `agreement_report` on the held-out
  set (top-1 agreement, accuracy and macro-F1 of fp32 and INT8, by view), file size, and ONNX Runtime
  CPU latency at 1 thread, batch 1 (fp32 and every INT8 model timed round-robin in one process, so
  machine drift is shared; median of per-round medians).

    PYTHONPATH=src OMP_NUM_THREADS=1 nice -n 10 python benchmarks/export/int8_sweep.py \\
        --data ../shared/data/hypopigmented --split runs/split.json --out benchmarks/export/int8_sweep.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hypoderm.export.int8 import agreement_report, quantize_int8
from hypoderm.inference import load_metadata
from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array, normalize_uint8

# (name, method, format, per_channel, layer groups kept in fp32, calibration set)
SETTINGS: list[tuple[str, str, str, bool, tuple[str, ...], str]] = [
    ("qdq-minmax-pt", "minmax", "qdq", False, (), "photos"),
    ("qdq-minmax", "minmax", "qdq", True, (), "photos"),
    ("qdq-entropy", "entropy", "qdq", True, (), "photos"),
    ("qdq-percentile", "percentile", "qdq", True, (), "photos"),
    ("qop-minmax", "minmax", "qoperator", True, (), "photos"),
    ("qdq-minmax+closeups", "minmax", "qdq", True, (), "photos+closeups"),
    ("qdq-minmax-keep-first", "minmax", "qdq", True, ("first_conv",), "photos"),
    ("qdq-minmax-keep-dw", "minmax", "qdq", True, ("depthwise",), "photos"),
    ("qdq-minmax-keep-eca", "minmax", "qdq", True, ("eca",), "photos"),
    ("qdq-minmax-keep-head", "minmax", "qdq", True, ("head",), "photos"),
    ("qdq-minmax-keep-first-dw-eca", "minmax", "qdq", True, ("first_conv", "depthwise", "eca"), "photos"),
    ("qdq-entropy+closeups", "entropy", "qdq", True, (), "photos+closeups"),
    ("qop-minmax-pt", "minmax", "qoperator", False, (), "photos"),
]


def _closeup_arrays(hwc: np.ndarray, key: str, spec: PreprocessSpec) -> list[np.ndarray]:
    import torch

    from hypoderm.engine.styleshift import closeups

    crops = closeups(torch.from_numpy(np.array(hwc)).permute(2, 0, 1), spec.size, key)
    return [normalize_uint8(np.ascontiguousarray(c.permute(1, 2, 0).numpy()), spec) for c in crops]


def build_sets(data: Path, split_path: Path, fold: int, spec: PreprocessSpec, class_names: list[str],
               calib_closeups: bool) -> dict[str, Any]:
    """Held-out inputs (fold `fold`: centre crop + close-ups) and calibration inputs (other folds)."""
    from hypoderm.engine.cache import decode_resized

    split = json.loads(split_path.read_text())
    ids = {c: i for i, c in enumerate(class_names)}
    ev_x, ev_y, ev_v, cal_x, cal_c = [], [], [], [], []
    for s in split["samples"]:
        hwc = decode_resized(data / s["path"], spec)
        centre = normalize_uint8(center_crop_array(hwc, spec.size), spec)
        if s["fold"] == fold:
            ups = _closeup_arrays(hwc, s["path"], spec)
            ev_x += [centre, *ups]
            ev_y += [ids[s["label"]]] * (1 + len(ups))
            ev_v += ["photo"] + ["closeup"] * len(ups)
        else:
            cal_x.append(centre)
            if calib_closeups:
                cal_c += _closeup_arrays(hwc, s["path"], spec)
    return {"eval": (ev_x, ev_y, ev_v), "calib": cal_x, "calib_closeups": cal_c}


def latency(paths: dict[str, Path], size: int, rounds: int, runs: int) -> dict[str, dict[str, float]]:
    """ORT CPU, 1 thread, batch 1: round-robin over the models, median of round medians (and p90)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for k, p in paths.items()}
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    times: dict[str, list[list[float]]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            name = s.get_inputs()[0].name
            out = [s.get_outputs()[0].name]
            for _ in range(5):
                s.run(out, {name: x})
            t = []
            for _ in range(runs):
                t0 = time.perf_counter()
                s.run(out, {name: x})
                t.append((time.perf_counter() - t0) * 1e3)
            times[k].append(t)
    return {k: {"median_ms": statistics.median(statistics.median(r) for r in v),
                "p90_ms": float(np.percentile(np.concatenate(v), 90))} for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=Path("src/hypoderm/assets/model.onnx"))
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--fold", type=int, default=1, help="held-out (validation) fold")
    ap.add_argument("--only", default="", help="comma-separated setting names (default: all)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--keep", type=Path, help="keep the INT8 models in this folder")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    import onnxruntime

    md = load_metadata(args.model)
    spec = PreprocessSpec.from_dict(md["input"])
    settings = [s for s in SETTINGS if not args.only or s[0] in args.only.split(",")]
    t0 = time.time()
    sets = build_sets(args.data, args.split, args.fold, spec, md["class_names"],
                      any(s[5] == "photos+closeups" for s in settings))
    ev_x, ev_y, ev_v = sets["eval"]
    print(f"held-out: {len(ev_x)} inputs ({ev_v.count('photo')} photos); calibration: {len(sets['calib'])} photos "
          f"(+{len(sets['calib_closeups'])} close-ups); {time.time() - t0:.0f}s", flush=True)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        import onnx.utils

        logits_only = folder / "fp32-logits.onnx"  # what the INT8 models compute (no Grad-CAM outputs)
        onnx.utils.extract_model(str(args.model), str(logits_only), [md["input"].get("name", "input")],
                                 [(md.get("output") or {}).get("name", "logits")])
        paths = {"fp32": args.model, "fp32-logits": logits_only}
        for name, method, fmt, per_channel, keep, calib in settings:
            t0 = time.time()
            images = sets["calib"] + (sets["calib_closeups"] if calib == "photos+closeups" else [])
            q = quantize_int8(args.model, images, folder / f"{name}.onnx", per_channel=per_channel,
                              max_images=len(images), method=method, quant_format=fmt, keep_fp32=keep)
            rep = agreement_report(args.model, q, ev_x, ev_y, ev_v)
            results[name] = {"method": method, "format": fmt, "per_channel": per_channel, "keep_fp32": list(keep),
                             "calibration": f"{calib} ({len(images)})", "bytes": q.stat().st_size, **rep,
                             "quantize_s": round(time.time() - t0, 1)}
            paths[name] = q
            bv = rep["by_view"]
            print(f"{name:26s} agree {rep['top1_agreement']:.3f}  F1 fp32 {rep['fp32']['macro_f1']:.4f} int8 "
                  f"{rep['int8']['macro_f1']:.4f} (photos {bv['photo']['fp32']['macro_f1']:.3f}/"
                  f"{bv['photo']['int8']['macro_f1']:.3f}, close-ups {bv['closeup']['fp32']['macro_f1']:.3f}/"
                  f"{bv['closeup']['int8']['macro_f1']:.3f})  |dp| max {rep['max_abs_prob_diff']:.3f} "
                  f"mean {rep['mean_abs_prob_diff']:.4f}  "
                  f"{q.stat().st_size / 1e6:.2f} MB  {time.time() - t0:.0f}s", flush=True)
        lat = latency(paths, spec.size, args.rounds, args.runs)
        for k, v in lat.items():
            print(f"latency {k:26s} {v['median_ms']:.2f} ms (p90 {v['p90_ms']:.2f})", flush=True)
    out = {"model": str(args.model), "fp32_bytes": args.model.stat().st_size, "split": str(args.split),
           "held_out_fold": args.fold, "image_size": spec.size,
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "onnxruntime": onnxruntime.__version__, "latency_threads": 1, "latency": lat, "settings": results}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
