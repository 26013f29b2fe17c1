"""Multi-crop test-time averaging, a candidate from issue 11, measured on the recipes' fold checkpoints.

For every test-fold photo of the study split, each fold's best.pt (from run_recipes.py) scores the
usual centre crop and seeded square close-ups centred on skin pixels (`hypoderm.engine.styleshift.closeups`:
3 or 8 at 30-50% of the shorter side, or 8 at 50-90%), and the probabilities are averaged per photo.
Also the photo-level average over the 3 tone-randomised close-ups (the `closeup_tone` view, one answer
per photo). Pooled over the 5 test folds; prints one JSON object.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/shortcut/multicrop_tta.py \
        benchmarks/shortcut/runs/hypodermnet-crop-tone-p40-128-e120 \
        benchmarks/shortcut/runs/hypodermnet-standard-p40-128-e120
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_recipes import DEFAULT_SPLIT, _predict  # noqa: E402

from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from hypoderm.data.splits import Split  # noqa: E402
from hypoderm.engine.cache import DecodedCache  # noqa: E402
from hypoderm.engine.fold import readable_index  # noqa: E402
from hypoderm.engine.styleshift import closeups, tone_randomised, view_metrics  # noqa: E402

VARIANTS = ("centre", "closeups3", "centre+closeups3", "closeups8", "centre+closeups8", "large_closeups8",
            "closeup_tone3_mean")


def photo_views(img: torch.Tensor, key: str, size: int, resize: int) -> dict[str, list[torch.Tensor]]:
    h, w = img.shape[1:]
    base = img if min(h, w) == resize else v2.functional.resize(img, resize, antialias=True)
    cu3 = closeups(img, size, key, n=3)
    return {"centre": [v2.functional.center_crop(base, [size, size])], "cu3": cu3,
            "cu8": closeups(img, size, key + "#tta", n=8),
            "large8": closeups(img, size, key + "#ttaL", n=8, scale=(0.5, 0.9)),
            "tone3": tone_randomised(cu3, key)}


def score_run(run: Path, data: str, split_path: Path) -> dict[str, dict[str, object]]:
    split = Split.load(split_path)
    first = load_checkpoint(run / "fold0" / "best.pt")
    from hypoderm.inference.preprocess import PreprocessSpec

    spec = PreprocessSpec.from_dict(first["preprocess"])
    cache = DecodedCache(spec)
    index, _ = readable_index(data, None, False, cache)
    labels = index.labels()
    norm = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(spec.mean), list(spec.std))])
    probs: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
    ys: list[int] = []
    for f in range(split.folds):
        ckpt = load_checkpoint(run / f"fold{f}" / "best.pt")
        predict = functools.partial(_predict, model_from_checkpoint(ckpt).eval(), float(ckpt["temperature"]))
        for i in split.partition(f)[2]:
            sample = index.samples[i]
            views = photo_views(cache.get(sample.path), index.relpath(sample), spec.size, spec.resize_size)
            p = {k: predict(torch.stack([norm(x) for x in ims])) for k, ims in views.items()}
            c = p["centre"][0]
            for name, value in (("centre", c), ("closeups3", p["cu3"].mean(0)),
                                ("centre+closeups3", (c + p["cu3"].sum(0)) / 4), ("closeups8", p["cu8"].mean(0)),
                                ("centre+closeups8", (c + p["cu8"].sum(0)) / 9),
                                ("large_closeups8", p["large8"].mean(0)), ("closeup_tone3_mean", p["tone3"].mean(0))):
                probs[name].append(value)
            ys.append(int(labels[i]))
    out = {}
    for name in VARIANTS:
        m = view_metrics(np.array(probs[name]), np.array(ys), 0.0)
        out[name] = {"roc_auc": round(m["roc_auc"], 3), "macro_f1": round(m["macro_f1"], 3),
                     "per_class_recall": [round(r, 2) for r in m["per_class_recall"]], "n": m["n"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run_recipes.py output folders (fold*/best.pt)")
    ap.add_argument("--data", default="../shared/data/hypopigmented")
    ap.add_argument("--split", type=Path, default=DEFAULT_SPLIT)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(json.dumps({run.name: score_run(run, args.data, args.split) for run in args.runs}, indent=1))


if __name__ == "__main__":
    main()
