"""Gate, skin check and model together, by held-out origin: what each real photo (skin or not) would get.

Every crop of extract.py goes through the bundled model (ONNX Runtime) and `result_from_logits` with the skin
check's *held-out* score (fit_skin_check.py: scored by a check that never saw the crop's origin), the statistics
gate and the abstain threshold, as `predict` and the page decide. Printed and written per origin and view:
skin photos refused (the worst outcome), answered (status ok); non-skin photos given a diagnosis (ok, the
other worst outcome), the skin-coloured ones apart; the synthetic TEST suite likewise. Also without the check
(what the bundled model gave before), for the comparison.

    OMP_NUM_THREADS=2 python benchmarks/nonskin/learned/end_to_end.py /tmp/gatefeat.npz /tmp/skin_check_heldout.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from hypoderm.inference import bundled_model, load_metadata
from hypoderm.inference.preprocess import PreprocessSpec, normalize_uint8
from hypoderm.inference.verdict import result_from_logits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("npz", type=Path)
    ap.add_argument("held", type=Path)
    ap.add_argument("--model", type=Path, default=bundled_model())
    ap.add_argument("--block", type=Path, default=Path("src/hypoderm/assets/skin_check.json"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("end_to_end.json"))
    args = ap.parse_args()
    z, h = np.load(args.npz), np.load(args.held)
    crops, side, origin, view, category = z["crops"], z["side"], z["origin"], z["view"], z["category"]
    held = h["held"]
    md = load_metadata(args.model)
    block = json.loads(args.block.read_text())
    with_check = {**md, "ood": {**(md.get("ood") or {}), "skin_check": block}}
    without = {**md, "ood": {k: v for k, v in (md.get("ood") or {}).items() if k != "skin_check"}}
    spec = PreprocessSpec.from_dict(md["input"])
    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    sess = ort.InferenceSession(str(args.model), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    keep = np.isin(side, ["skin", "nonskin", "synthetic_test"])
    logits = np.zeros((len(side), len(md["class_names"])), np.float32)
    idx = np.where(keep)[0]
    for i in range(0, len(idx), 64):
        b = idx[i:i + 64]
        logits[b] = sess.run(["logits"], {name: np.stack([normalize_uint8(crops[j], spec) for j in b])})[0]
    status = {}
    for key, meta in (("with_check", with_check), ("without_check", without)):
        st = np.array([""] * len(side), dtype=object)
        for j in idx:
            score = float(held[j]) if key == "with_check" and np.isfinite(held[j]) else None
            st[j] = result_from_logits(logits[j], crops[j], meta, source_side=None, skin_score=score)["status"]
        status[key] = st
    rows = []
    for s_name in ("skin", "nonskin", "synthetic_test"):
        for o in sorted(set(origin[side == s_name])):
            for v in ("centre", "closeup"):
                sel = (side == s_name) & (origin == o) & (view == v)
                if not sel.any():
                    continue
                row = {"side": s_name, "origin": o, "view": v, "n": int(sel.sum())}
                for key, st in status.items():
                    row[key] = {"refused": float(np.mean(st[sel] == "not_skin")),
                                "uncertain": float(np.mean(st[sel] == "uncertain")),
                                "ok": float(np.mean(st[sel] == "ok"))}
                    sc = sel & (category == "skin_coloured")
                    if s_name == "nonskin" and sc.any():
                        row[key]["skin_coloured_ok"] = float(np.mean(st[sc] == "ok"))
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps({"model": args.model.name, "block": block, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
