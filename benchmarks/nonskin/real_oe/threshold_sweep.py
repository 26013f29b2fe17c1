"""Would a higher abstain threshold withhold the pastries? For one held-out run (default A: bakery, intel and
raccoon left out of its bank), the share of held-out bakery crops and of validation skin crops that get a
diagnosis at abstain thresholds from the fitted one to 0.95, everything else as `predict` decides (statistics
gate, the skin check's held-out score). Writes threshold_sweep.json.

    OMP_NUM_THREADS=1 python benchmarks/nonskin/real_oe/threshold_sweep.py /tmp/gatefeat.npz \
        /tmp/skin_check_heldout.npz runs/bundled-v2/split.json runs/real_oe/A
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from end_to_end import batch_logits, with_skin_check  # this folder's script: the same model, metadata and batching

from hypoderm.data.splits import Split
from hypoderm.inference.predictor import OnnxPredictor
from hypoderm.inference.verdict import result_from_logits, softmax


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("npz", type=Path)
    ap.add_argument("held", type=Path)
    ap.add_argument("split", type=Path)
    ap.add_argument("run", type=Path)
    ap.add_argument("--origin", default="bakery")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("threshold_sweep.json"))
    args = ap.parse_args()
    z, held = np.load(args.npz), np.load(args.held)["held"]
    crops, side, origin, names = z["crops"], z["side"], z["origin"], z["name"]
    val = {s.path for s in Split.load(args.split).samples if s.fold == 1}
    skin = np.array([str(n) in val for n in names]) & (side == "skin")
    other = (side == "nonskin") & (origin == args.origin)
    sel = np.where(skin | other)[0]
    predictor = OnnxPredictor(args.run / "model.int8w.onnx")
    md = with_skin_check(predictor.metadata)
    logits = batch_logits(predictor, crops, sel)
    conf = softmax(logits, md["temperature"]).max(axis=1)
    # passes the gate and the skin check: status ok once the abstain threshold is out of the way
    passes = np.array([result_from_logits(lg, crops[j], {**md, "abstain_threshold": 0.0}, source_side=None,
                                          skin_score=float(held[j]) if np.isfinite(held[j]) else None)["status"]
                       == "ok" for lg, j in zip(logits, sel, strict=True)])
    is_skin = skin[sel]
    answered_as = logits.argmax(axis=1)
    rows = []
    for t in (md["abstain_threshold"], 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        ok = passes & (conf >= t)
        rows.append({"threshold": round(float(t), 4), "skin_answered": float(ok[is_skin].mean()),
                     f"{args.origin}_answered": float(ok[~is_skin].mean())})
        print(json.dumps(rows[-1]))
    ok = passes & (conf >= md["abstain_threshold"]) & ~is_skin
    counts = {c: int(n) for c, n in zip(md["class_names"], np.bincount(answered_as[ok], minlength=3), strict=True)}
    print(f"{args.origin} answered at the fitted threshold, by class: {counts}")
    args.out.write_text(json.dumps({"run": args.run.name, "origin": args.origin, "n_skin": int(is_skin.sum()),
                                    f"n_{args.origin}": int((~is_skin).sum()), "rows": rows,
                                    "answered_as": counts}, indent=1) + "\n")


if __name__ == "__main__":
    main()
