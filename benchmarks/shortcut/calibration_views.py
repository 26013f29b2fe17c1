"""Abstain threshold and temperature fitted on validation centre crops (A) vs centre crops + close-ups (B),
scored on the test folds of the 120-epoch crop-tone cross-validation (benchmarks/shortcut/README.md).

    python benchmarks/shortcut/calibration_views.py [TARGET]     # from the repository root; TARGET default 0.95

Prints, per calibration and per test view (c: centre crops, v: close-ups), the means over the 5 folds of:
temperature, threshold, share answered, accuracy on answered, ECE, share answered wrongly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
from hypoderm.data.splits import Split
from hypoderm.engine.cache import DecodedCache
from hypoderm.engine.calibration import choose_abstain_threshold, fit_temperature
from hypoderm.engine.fold import readable_index
from hypoderm.engine.styleshift import build_views
from hypoderm.inference import softmax
from hypoderm.inference.preprocess import PreprocessSpec
from hypoderm.metrics import expected_calibration_error

RUN = Path("benchmarks/shortcut/runs/hypodermnet-crop-tone-p40-128-e120")
SPLIT = Path("benchmarks/comparison/h200_224/split.json")
DATA = "../shared/data/hypopigmented"


def main(target: float) -> None:
    torch.set_num_threads(1)
    spec = PreprocessSpec.for_size(128)
    cache = DecodedCache(spec)
    index, _ = readable_index(DATA, None, False, cache)
    split = Split.load(SPLIT)
    labels = index.labels()
    norm = v2.Compose([v2.CenterCrop(spec.size), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(spec.mean), list(spec.std))])
    agg: dict[str, dict[str, list[dict[str, float]]]] = {"A": {"c": [], "v": []}, "B": {"c": [], "v": []}}
    for f in range(split.folds):
        model = model_from_checkpoint(load_checkpoint(RUN / f"fold{f}" / "best.pt")).eval()

        def logits_of(ims: list[torch.Tensor], model: torch.nn.Module = model) -> np.ndarray:
            with torch.no_grad():
                return model(torch.stack([norm(x) for x in ims])).numpy()

        def views_of(idx: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            ims = [cache.get(index.samples[i].path) for i in idx]
            keys = [index.relpath(index.samples[i]) for i in idx]
            crops, src = build_views(ims, keys, spec, views=["closeup"])["closeup"]
            return logits_of(ims), labels[idx], logits_of(crops), labels[idx][src]

        _, val_idx, test_idx = split.partition(f)
        vc, vy, vv, vvy = views_of(val_idx)
        tc, ty, tv, tvy = views_of(test_idx)
        fits = {"A": (vc, vy), "B": (np.concatenate([vc, vv]), np.concatenate([vy, vvy]))}
        for name, (fit_logits, fit_y) in fits.items():
            t = fit_temperature(fit_logits, fit_y)
            thr = choose_abstain_threshold(softmax(fit_logits, t), fit_y, target)["threshold"]
            for key, (test_logits, test_y) in {"c": (tc, ty), "v": (tv, tvy)}.items():
                p = softmax(test_logits, t)
                answered = p.max(1) >= thr
                right = p.argmax(1) == test_y
                agg[name][key].append({
                    "t": t, "thr": thr, "answered": float(answered.mean()),
                    "accuracy": float(right[answered].mean()) if answered.any() else float("nan"),
                    "ece": expected_calibration_error(p, test_y),
                    "answered_wrongly": float((~right & answered).mean())})
    for name, by_view in agg.items():
        for key, rows in by_view.items():
            print(name, key, {k: round(float(np.nanmean([r[k] for r in rows])), 3) for k in rows[0]})


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.95)
