"""fp32 vs INT8 ONNX Runtime: latency (same run) and accuracy / macro-F1 on the real photos.

    .venv/bin/python benchmarks/export/run_export_bench.py
        [--epochs 8] [--size 128] [--out benchmarks/export/results.json]

1. Real data (../shared/data/hypopigmented): fold 0 of hypoderm.data.splits.make_split(folds=5, seed=0)
   (stratified, group-aware by near-duplicate clusters): train / val / test.
2. For hypodermnet and mnv3s: a short from-scratch training at `--size` (Adam, class-weighted CE,
   flip + random-crop), checkpoint, `export_onnx` (parity on val photos), OOD thresholds fitted on
   val, `quantize_int8` calibrated on train photos, `agreement_report` on the test photos.
3. Latency: the same two architectures randomly initialised at 224 px, fp32 and INT8 (calibrated on
   64 train photos), `bench_onnx` at 1 thread and all cores, alternating rounds in one process.
4. OOD skin-colour rule: share of the real photos above DEFAULT_SKIN_FRACTION_MIN.
Checkpoints and ONNX files go to a temporary folder (never the repo).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hypoderm.checkpoint import FORMAT, save_atomic
from hypoderm.data.dataset import load_index
from hypoderm.data.splits import make_split
from hypoderm.export import agreement_report, bench_onnx, export_onnx, quantize_int8
from hypoderm.imaging.io import load_rgb
from hypoderm.inference import METADATA_FORMAT
from hypoderm.inference.metadata import input_block, metadata_from_checkpoint
from hypoderm.inference.ood import DEFAULT_SKIN_FRACTION_MIN, fit_ood_thresholds, skin_fraction
from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array, normalize_uint8, resized_uint8
from hypoderm.models import create_model

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "hypopigmented"
MODELS = ("hypodermnet", "mnv3s")


def train(name: str, arrays: list[np.ndarray], y: np.ndarray, spec: PreprocessSpec, epochs: int,
          seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = create_model(name, num_classes=2)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    weights = torch.tensor(len(y) / (2 * np.bincount(y, minlength=2)), dtype=torch.float32)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(y))
        losses = []
        for i in range(0, len(order), 32):
            batch = []
            for j in order[i: i + 32]:
                a = arrays[j]
                h, w = a.shape[:2]
                top, left = rng.integers(0, h - spec.size + 1), rng.integers(0, w - spec.size + 1)
                a = a[top: top + spec.size, left: left + spec.size]
                batch.append(normalize_uint8(a[:, ::-1] if rng.random() < 0.5 else a, spec))
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(np.stack(batch))),
                                                     torch.from_numpy(y[order[i: i + 32]]), weight=weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss))
        print(f"  {name} epoch {epoch + 1}/{epochs} loss {np.mean(losses):.3f}", flush=True)
    return model.eval()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = ap.parse_args()
    if not REAL.is_dir():
        print(f"real data not found at {REAL}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="hypoderm_export_bench_"))
    results: dict = {"machine": f"{platform.machine()} {os.cpu_count()} logical CPUs (shared with other jobs)",
                     "python": platform.python_version(), "torch": torch.__version__, "command": " ".join(sys.argv),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    index = load_index(REAL)
    split = make_split(index, folds=5, seed=0)
    tr, va, te = split.partition(0)
    labels = index.labels()
    images = [load_rgb(s.path) for s in index.samples]
    results["split"] = {"source": "hypoderm.data.splits.make_split(folds=5, seed=0), fold 0",
                        "group_source": getattr(split, "group_source", None),
                        "train": len(tr), "val": len(va), "test": len(te), "class_names": index.class_names}

    spec224 = PreprocessSpec()
    fracs = np.array([skin_fraction(center_crop_array(resized_uint8(im, spec224), 224)) for im in images])
    results["ood_skin_rule"] = {"threshold": DEFAULT_SKIN_FRACTION_MIN, "images": len(fracs),
                                "pass": int((fracs >= DEFAULT_SKIN_FRACTION_MIN).sum()),
                                "per_class_min": {c: float(fracs[labels == k].min())
                                                  for k, c in enumerate(index.class_names)},
                                "median": float(np.median(fracs))}
    print("ood:", results["ood_skin_rule"], flush=True)

    spec = PreprocessSpec.for_size(args.size)
    arrays = [resized_uint8(im, spec) for im in images]
    results["trained"] = {}
    for name in MODELS:
        t0 = time.time()
        model = train(name, [arrays[i] for i in tr], labels[tr], spec, args.epochs)
        with torch.inference_mode():
            val_x = torch.from_numpy(np.stack([normalize_uint8(center_crop_array(arrays[i], spec.size), spec)
                                               for i in va]))
            val_logits = model(val_x).numpy()
        ood = fit_ood_thresholds(val_logits.max(1), quantile=0.01)
        ckpt = {"format": FORMAT, "model_name": name, "num_classes": 2, "model_kwargs": {},
                "state_dict": model.state_dict(), "class_names": index.class_names, "preprocess": spec.to_dict(),
                "temperature": 1.0, "abstain_threshold": 0.6, "ood": ood, "config": {"epochs": args.epochs},
                "split": None, "epoch": args.epochs, "metrics": {},
                "data_summary": {"summary": "hypopigmented dev set, fold 0 train", "counts": {
                    c: int((labels[tr] == k).sum()) for k, c in enumerate(index.class_names)}}}
        save_atomic(ckpt, tmp / name / "best.pt")
        fp32 = export_onnx(model, metadata_from_checkpoint(ckpt), tmp / name / "model.onnx",
                           parity_images=[images[i] for i in va[:16]])
        int8 = quantize_int8(fp32, [images[i] for i in tr[:128]], tmp / name / "model.int8.onnx")
        rep = agreement_report(fp32, int8, [images[i] for i in te], labels[te].tolist())
        parity = json.loads(fp32.with_suffix(".json").read_text())["parity"]
        results["trained"][name] = {"size": args.size, "epochs": args.epochs,
                                    "train_seconds": round(time.time() - t0, 1),
                                    "parity_max_abs_diff": parity["max_abs_diff"], "ood": ood, "test": rep}
        print(name, json.dumps(results["trained"][name]), flush=True)

    results["latency_224"] = {}
    calib = [images[i] for i in tr[:64]]
    for name in MODELS:
        torch.manual_seed(0)
        model = create_model(name, num_classes=2).eval()
        md = {"format": METADATA_FORMAT, "model_name": name, "version": "bench", "precision": "fp32",
              "class_names": index.class_names, "input": input_block(spec224), "output": {"name": "logits"},
              "temperature": 1.0, "abstain_threshold": 0.6, "ood": None}
        fp32 = export_onnx(model, md, tmp / f"{name}_224" / "model.onnx")
        int8 = quantize_int8(fp32, calib, tmp / f"{name}_224" / "model.int8.onnx")
        row: dict = {}
        for threads in (1, os.cpu_count()):
            rounds = {"fp32": [], "int8": []}
            for _ in range(3):  # alternate so background load hits both alike
                for prec, path in (("fp32", fp32), ("int8", int8)):
                    rounds[prec].append(bench_onnx(path, threads=threads, runs=args.runs, warmup=5)["median_ms"])
            f, q = float(np.median(rounds["fp32"])), float(np.median(rounds["int8"]))
            row[f"threads_{threads}"] = {"fp32_median_ms": f, "int8_median_ms": q, "speedup": f / q,
                                         "rounds": rounds}
        row["size_mb"] = {"fp32": fp32.stat().st_size / 1e6, "int8": int8.stat().st_size / 1e6}
        results["latency_224"][name] = row
        print(name, json.dumps(row), flush=True)
    import onnxruntime

    results["onnxruntime"] = onnxruntime.__version__
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
