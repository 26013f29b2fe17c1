"""Does the skin check give the same score when the model's input is larger than the 128 px it was fitted at?

The models of `input_size_models.py` (one folder per size, the shipped check in each graph, resizing its input to
128 px) scored on real photos, each size against 128: the share of photos on the same side of the check's two
thresholds, and the score's mean and largest difference. `--without-resize` also writes each larger model with
the check attached as it was before the resize (the check reading the larger input directly) and scores those.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/export/input_size_check_scores.py /tmp/sizes 160 192 224 \\
        --shared ../shared --per-side 60 --without-resize
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

import numpy as np

from hypoderm.export.skincheck import attach, shipped_skin_check
from hypoderm.imaging.io import load_rgb
from hypoderm.inference import OnnxPredictor


def scores(model: Path, photos: list[Path]) -> np.ndarray:
    p = OnnxPredictor(model, threads=1)
    return np.array([p.predict_image(load_rgb(f))["ood"]["skin_score"] for f in photos])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="input_size_models.py's --out")
    ap.add_argument("sizes", nargs="+", type=int, help="sizes to compare with 128")
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--per-side", type=int, default=60, help="photos drawn from each of skin and not skin")
    ap.add_argument("--without-resize", action="store_true")
    args = ap.parse_args()
    data = args.shared / "data"
    rng = random.Random(0)
    skin, non = (list(csv.DictReader(f.read_text().splitlines()))
                 for f in (data / "multisource" / "index-v2.csv", data / "nonskin" / "index.csv"))
    photos = [data / "multisource" / r["path"] for r in rng.sample(skin, args.per_side)]
    photos += [data / "nonskin" / r["path"] for r in rng.sample(non, args.per_side)]
    check, block = shipped_skin_check() or (None, None)
    if check is None:
        raise SystemExit("this checkout has no src/hypoderm/assets/skin_check.onnx")
    base = scores(args.folder / "128" / "model.int8w.onnx", photos)
    out: dict[str, dict] = {}
    variants = [("resized to 128", "")] + ([("read directly", "-direct")] if args.without_resize else [])
    for size in args.sizes:
        for label, suffix in variants:
            model = args.folder / str(size) / "model.int8w.onnx"
            if suffix:
                direct = args.folder / f"{size}{suffix}"
                direct.mkdir(exist_ok=True)
                model = attach(model, check, {k: v for k, v in block.items() if k != "input_size"},
                               out_path=direct / "model.int8w.onnx")
            s = scores(model, photos)
            row = {"mean_abs_diff": round(float(np.abs(s - base).mean()), 3),
                   "max_abs_diff": round(float(np.abs(s - base).max()), 3),
                   "same_side_of_threshold": round(float(np.mean((s < block["threshold"]) ==
                                                                 (base < block["threshold"]))), 3),
                   "same_side_of_answer_threshold": round(float(np.mean((s < block["answer_threshold"]) ==
                                                                        (base < block["answer_threshold"]))), 3)}
            out[f"{size} px, check input {label}"] = row
            print(size, label, row, flush=True)
    print(json.dumps({"photos": len(photos), "per_side": args.per_side, "seed": 0, "against": "128 px",
                      "rows": out}, indent=1))


if __name__ == "__main__":
    main()
