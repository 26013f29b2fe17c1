"""Linear probes on *frozen* ImageNet MobileNetV3-Small features, judged like fit_skin_check.py (3 folds, each
holding out every third skin origin and every third non-skin origin): the designs the shipped check was chosen
against. Prints, for thresholds keeping 98% / 95% / 90% of the worst held-out skin origin, the share of each
held-out non-skin origin that would pass.

    python benchmarks/nonskin/learned/compare_probes.py /tmp/gatefeat.npz f576            # 128 px crops
    python benchmarks/nonskin/learned/compare_probes.py /tmp/feat224.npz f576 --meta /tmp/gatefeat.npz
        # the same crops upsampled to 224 px (features from the 128 px crops with bilinear upsampling)
"""

from __future__ import annotations

import argparse

import numpy as np
from folds import left_out, origin_folds  # this folder's fold definition (fit_skin_check.py's)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("features_npz")
    ap.add_argument("features", help="comma-separated arrays of the file: f576, f1024, logits")
    ap.add_argument("--meta", help="the extract.py file with side/origin/... (default: features_npz)")
    ap.add_argument("--C", type=float, default=0.1)
    args = ap.parse_args()
    f, z = np.load(args.features_npz), np.load(args.meta or args.features_npz)
    x = np.concatenate([f[k] for k in args.features.split(",")], 1)
    side, origin, category = z["side"], z["origin"], z["category"]
    y = (side == "skin").astype(int)
    train = np.isin(side, ["skin", "nonskin", "synthetic_fit", "samples"])
    so, no = sorted(set(origin[side == "skin"])), sorted(set(origin[side == "nonskin"]))
    held = np.full(len(y), np.nan)
    for fo, fold in enumerate(origin_folds(side, origin)):
        left = left_out(side, origin, fold)
        m = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=3000, class_weight="balanced"))
        m.fit(x[train & ~left], y[train & ~left])
        held[left] = m.decision_function(x[left])
        if fo == 0:
            held[side == "synthetic_test"] = m.decision_function(x[side == "synthetic_test"])
    for q in (0.02, 0.05, 0.10):
        t = min(np.quantile(held[(side == "skin") & (origin == o)], q) for o in so)
        passed = ", ".join(f"{o} {np.mean(held[(side == 'nonskin') & (origin == o)] >= t):.2f}" for o in no)
        sc = np.mean(held[(side == "nonskin") & (category == "skin_coloured")] >= t)
        print(f"{args.features} q={q:.2f}: non-skin passing: {passed} | skin-coloured {sc:.2f} | synthetic TEST "
              f"{np.mean(held[side == 'synthetic_test'] >= t):.2f}")


if __name__ == "__main__":
    main()
