"""How far frozen ImageNet features go: a logistic regression on the frozen ImageNet MobileNetV3-Small's pooled
features (no fine-tuning), judged by held-out origin beside the photo-style baseline (the shortcut audit's trivial
photo features of the same crop, same classifier, same folds), and by ordinary grouped 5-fold CV.

The features come from benchmarks/nonskin/learned/extract.py (128 px centre squares + 2 close-ups per photo of
multisource index-v2; `f576` = the last conv block pooled) and, for 224 px, the same crops re-extracted
(`/tmp/feat224.npz`, keys f576 + idx into the first file). Train on every other origin (centre + close-ups), test on
the held-out origin's centre squares. vitiligo has one origin (biraja-web): holding it out leaves no vitiligo to
learn, so biraja-web is untestable this way (named in the output).

    python benchmarks/origins/frozen_probe.py --features /tmp/gatefeat.npz --features224 /tmp/feat224.npz \
        --manifest ../shared/data/multisource/index-v2.csv --out benchmarks/origins/frozen_probe.json
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hypoderm.data.shortcut.features import PIXEL_FEATURES, photo_features

UNTESTABLE = {"biraja-web": "the only origin of vitiligo: without it there is no vitiligo to learn"}


def classifier() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000, class_weight="balanced"))


def style_features(crops: np.ndarray) -> np.ndarray:
    rows = [photo_features(Image.fromarray(c)) for c in crops]
    return np.nan_to_num(np.array([[r[n] for n in PIXEL_FEATURES] for r in rows], np.float32))


def held_out(x: np.ndarray, y: np.ndarray, origin: np.ndarray, centre: np.ndarray, classes: list[str]) -> dict:
    out = {}
    for o in sorted(set(origin)):
        if o in UNTESTABLE:
            out[o] = {"untestable": UNTESTABLE[o]}
            continue
        train, test = origin != o, (origin == o) & centre
        clf = classifier().fit(x[train], y[train])
        pred = clf.predict(x[test])
        per = {}
        for k in sorted(set(y[test])):
            m = y[test] == k
            per[classes[k]] = {"n": int(m.sum()), "recall": round(float((pred[m] == k).mean()), 3),
                               "called": {c: round(float((pred[m] == j).mean()), 3) for j, c in enumerate(classes)}}
        out[o] = per
    return out


def grouped_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, centre: np.ndarray, seed: int = 0) -> dict:
    f1s = []
    for tr, te in StratifiedGroupKFold(5, shuffle=True, random_state=seed).split(x, y, groups):
        te = te[centre[te]]
        clf = classifier().fit(x[tr], y[tr])
        f1s.append(f1_score(y[te], clf.predict(x[te]), average="macro"))
    return {"macro_f1_folds": [round(float(f), 3) for f in f1s], "macro_f1_mean": round(float(np.mean(f1s)), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=Path, required=True)
    ap.add_argument("--features224", type=Path)
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    t0 = time.time()
    d = np.load(args.features)
    skin = d["side"] == "skin"
    idx = np.flatnonzero(skin)
    classes = sorted(set(d["category"][skin]))
    y = np.array([classes.index(c) for c in d["category"][idx]])
    origin, centre, names = d["origin"][idx], d["view"][idx] == "centre", d["name"][idx]
    with open(args.manifest, newline="", encoding="utf-8") as f:
        group_of = {r["path"]: r["group"] for r in csv.DictReader(f)}
    groups = np.array([group_of[str(n)] for n in names])
    sets = {"imagenet_frozen_128": d["f576"][idx], "photo_style_128": style_features(d["crops"][idx])}
    if args.features224:
        d224 = np.load(args.features224)
        pos = {int(i): k for k, i in enumerate(d224["idx"])}
        sets["imagenet_frozen_224"] = d224["f576"][[pos[int(i)] for i in idx]]
    result = {"classes": classes, "n_photos": int(centre.sum()), "rows_with_closeups": len(idx),
              "classifier": "StandardScaler + LogisticRegression(C=0.05, class_weight=balanced), scikit-learn",
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "untestable": UNTESTABLE,
              "features": {}}
    for name, x in sets.items():
        result["features"][name] = {"held_out_origin": held_out(x, y, origin, centre, classes),
                                    "grouped_cv": grouped_cv(x, y, groups, centre)}
        print(name, json.dumps(result["features"][name]["grouped_cv"]))
        for o, r in result["features"][name]["held_out_origin"].items():
            print(f"  {o:14s}", "; ".join(f"{c}: n={v['n']} recall={v['recall']} vitiligo={v['called']['vitiligo']}"
                                          for c, v in r.items() if isinstance(v, dict)) or r.get("untestable"))
    result["wall_s"] = round(time.time() - t0, 1)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
