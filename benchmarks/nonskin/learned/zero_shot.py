"""A refusal that never sees a non-skin photo: ImageNet's own classifier, told only what skin looks like to it.

For each fold of fit_skin_check.py (every third skin origin held out), the ImageNet classes that carry `--cover` of
the mean softmax mass of the *training* skin crops are "skin-like"; a crop's score is its softmax mass on them. The
threshold keeps 1 - q of the worst held-out skin origin. No non-skin photo is used anywhere, so every non-skin origin
is held out by construction. Printed beside the shipped check's held-out scores (withheld below its
answer_threshold), and the two together (either one withholds).

    python benchmarks/nonskin/learned/zero_shot.py /tmp/gatefeat.npz /tmp/skin_check_heldout.npz            # 128 px
    python benchmarks/nonskin/learned/zero_shot.py /tmp/gatefeat.npz /tmp/skin_check_heldout.npz \
        --logits /tmp/feat224.npz --cover 0.8          # ImageNet logits of the same crops upsampled to 224 px
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from folds import origin_folds  # this folder's fold definition (fit_skin_check.py's)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("npz", type=Path, help="extract.py's file (crops' side, origin, view, ImageNet logits at 128 px)")
    ap.add_argument("held", type=Path, help="fit_skin_check.py's held-out scores")
    ap.add_argument("--logits", type=Path, help="another file's `logits` for the same crops (e.g. 224 px)")
    ap.add_argument("--cover", type=float, default=0.9)
    ap.add_argument("--block", type=Path, default=Path("src/hypoderm/assets/skin_check.json"))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    z, held = np.load(args.npz), np.load(args.held)["held"]
    side, origin, view = z["side"], z["origin"], z["view"]
    logits = np.load(args.logits)["logits"] if args.logits else z["logits"]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    answer_t = json.loads(args.block.read_text())["answer_threshold"]
    skin_o, non_o = sorted(set(origin[side == "skin"])), sorted(set(origin[side == "nonskin"]))
    score = np.zeros(len(side))
    n_classes = []
    for out_skin, _ in origin_folds(side, origin):
        out = (side == "skin") & np.isin(origin, out_skin)
        mean = p[(side == "skin") & ~out].mean(0)
        order = np.argsort(-mean)
        cls = order[:int(np.searchsorted(np.cumsum(mean[order]), args.cover)) + 1]
        n_classes.append(len(cls))
        s = p[:, cls].sum(1)
        score[out] = s[out]
        score[side != "skin"] += s[side != "skin"] / 3  # never trained on: the three folds' mean
    result = {"logits": str(args.logits or args.npz), "cover": args.cover, "classes_per_fold": n_classes,
              "check_answer_threshold": answer_t, "quantiles": []}
    for q in (0.01, 0.03, 0.05):
        t = float(min(np.quantile(score[(side == "skin") & (origin == o)], q) for o in skin_o))
        rows = []
        for s_name, origins in (("skin", skin_o), ("nonskin", non_o)):
            for o in origins:
                sel = (side == s_name) & (origin == o) & (view == "centre")
                zs, ck = score[sel] < t, held[sel] < answer_t
                rows.append({"side": s_name, "origin": o, "n": int(sel.sum()), "zero_shot": float(zs.mean()),
                             "check": float(ck.mean()), "either": float((zs | ck).mean())})
                print(f"q={q} t={t:.3f} {s_name:7s} {o:12s} n={sel.sum():4d} withheld: zero-shot {zs.mean():.2f} "
                      f"check {ck.mean():.2f} either {(zs | ck).mean():.2f}")
        result["quantiles"].append({"q": q, "threshold": t, "centre_rows": rows})
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
