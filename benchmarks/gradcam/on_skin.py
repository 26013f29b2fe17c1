"""Does the heat map lie on the skin? (issue 26, item 5) For each photo: the bundled model's answer and its
Grad-CAM (hypoderm.inference.explain, the map the app shows) on the square the model saw, and how the map's mass
falls on two kinds of pixels of that square: skin-coloured (the not-skin gate's colour rule,
hypoderm.imaging.colour.skin_mask: a chroma box, so pale depigmented patches and grey/white backgrounds are both
outside it) and dark background (every channel < 40 of 255: black studio or clinic backdrops). A map that followed
area alone would put the same share of its mass on each kind as the kind's share of the area: the ratio
mass share / area share says where the model looks (> 1: drawn to it). Only answered photos (status ok) are
counted, because only they get a heat map in the app.

    OMP_NUM_THREADS=1 python benchmarks/gradcam/on_skin.py --manifest ../shared/data/multisource/index-v2.csv \
        --per-origin 80 --out benchmarks/gradcam/on_skin.json

Origins the bundled model never saw: those of index-v2 not in index.csv (written in the output), for a model trained
on index.csv. For a model trained on index-v2, `--only RUN/val.csv` draws only its validation photos (never trained
on, from origins it saw), and every cell counts as held out.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import platform
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from hypoderm.imaging.colour import skin_mask
from hypoderm.inference import bundled_model
from hypoderm.inference.explain import gradcam_map
from hypoderm.inference.predictor import OnnxPredictor, load_image, prepare

DARK_MAX = 40


def shares(crop: np.ndarray, cam: np.ndarray) -> dict[str, float]:
    mass = cam / max(float(cam.sum()), 1e-12)
    skin = skin_mask(crop)
    dark = crop.max(axis=-1) < DARK_MAX
    return {"skin_area": float(skin.mean()), "skin_heat": float(mass[skin].sum()),
            "dark_area": float(dark.mean()), "dark_heat": float(mass[dark].sum())}


def summarise(rows: list[dict]) -> dict:
    if not rows:
        return {"n": 0}
    a = {k: np.array([r[k] for r in rows]) for k in ("skin_area", "skin_heat", "dark_area", "dark_heat")}
    with_dark = a["dark_area"] > 0.05
    return {"n": len(rows), "skin_area_mean": round(float(a["skin_area"].mean()), 3),
            "skin_heat_mean": round(float(a["skin_heat"].mean()), 3),
            "skin_heat_over_area": round(float(a["skin_heat"].sum() / max(a["skin_area"].sum(), 1e-9)), 2),
            "n_with_dark_background": int(with_dark.sum()),
            "dark_area_mean_there": round(float(a["dark_area"][with_dark].mean()), 3) if with_dark.any() else None,
            "dark_heat_mean_there": round(float(a["dark_heat"][with_dark].mean()), 3) if with_dark.any() else None,
            "share_with_most_heat_on_dark": round(float((a["dark_heat"] > 0.5).mean()), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, required=True, help="multisource index-v2.csv")
    ap.add_argument("--model", type=Path, default=None, help="model.onnx (default: the bundled model)")
    ap.add_argument("--per-origin", type=int, default=80, help="photos drawn per (origin, class), seed 0")
    ap.add_argument("--only", type=Path, default=None,
                    help="a CSV with a path column (e.g. a training run's val.csv): draw only these photos; every "
                         "cell then counts as held out (photos the model never trained on, from origins it saw)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t0 = time.time()
    model_path = args.model or bundled_model()
    predictor = OnnxPredictor(model_path, threads=1)
    with open(args.manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    v1 = args.manifest.parent / "index.csv"
    seen: set[str] = set()
    if args.only is not None:
        with open(args.only, newline="", encoding="utf-8") as f:
            keep = {str((args.only.parent / r["path"]).resolve()) for r in csv.DictReader(f)}
        rows = [r for r in rows if str((args.manifest.parent / r["path"]).resolve()) in keep]
    elif v1.is_file():
        with open(v1, newline="", encoding="utf-8") as f:
            seen = {r["origin"] for r in csv.DictReader(f)}
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        cells[(r["origin"], r["label"])].append(r)
    rng = random.Random(0)
    per_cell: dict[str, dict] = {}
    pooled: dict[str, list[dict]] = defaultdict(list)
    for (origin, label), members in sorted(cells.items()):
        chosen = rng.sample(members, min(args.per_origin, len(members)))
        answered, statuses = [], defaultdict(int)
        for r in chosen:
            img = load_image(args.manifest.parent / r["path"])
            crop, _ = prepare(img, predictor.spec)
            result, (features, weights) = predictor.predict_with_cam(img)
            statuses[result["status"]] += 1
            if result["status"] != "ok":
                continue
            k = predictor.class_names.index(result["top_k"][0]["label"])
            cam = gradcam_map(features, weights, k, crop.shape[0], crop.shape[1])
            answered.append({**shares(crop, cam), "answer": result["top_k"][0]["label"]})
        key = f"{origin}/{label}"
        held_out = origin not in seen
        per_cell[key] = {"held_out": held_out, "drawn": len(chosen), "status": dict(statuses),
                         **summarise(answered)}
        pooled["held_out" if held_out else "seen_in_training"].extend(answered)
        print(key, json.dumps(per_cell[key]), flush=True)
    out = {"model": str(model_path.name), "model_sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
           "manifest": args.manifest.name, "per_origin": args.per_origin,
           "only": args.only.name if args.only else None,
           "dark_max": DARK_MAX, "threads": 1, "machine": platform.machine(), "seen_origins": sorted(seen),
           "pooled": {k: summarise(v) for k, v in pooled.items()}, "cells": per_cell,
           "wall_s": round(time.time() - t0, 1)}
    args.out.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out["pooled"], indent=1))


if __name__ == "__main__":
    main()
