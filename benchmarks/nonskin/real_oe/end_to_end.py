"""Outlier exposure with real non-skin photos, judged end to end on non-skin origins the model never saw.

Each non-skin origin is scored by the model trained *without* it (`--outliers-exclude`, the three folds of the skin
check: benchmarks/nonskin/learned/results.json) and by the skin check that never saw it (fit_skin_check.py's
held-out scores), through the statistics gate and the abstain threshold, as `predict` and the page decide
(`result_from_logits`). Beside it, the same recipe with the synthetic outlier pictures only (`--compare`) and any
other model. Skin photos: the validation fold of the split (photos no model here trained on), every crop.

    OMP_NUM_THREADS=2 python benchmarks/nonskin/real_oe/end_to_end.py /tmp/gatefeat.npz /tmp/skin_check_heldout.npz \
        runs/bundled-v2/split.json --held runs/real_oe/A runs/real_oe/B runs/real_oe/C --final runs/bundled-v2 \
        --compare synthetic-only=runs/real_oe/none/model.int8w.onnx bundled-v1=src/hypoderm/assets/model.onnx

The crops and the held-out skin-check scores come from benchmarks/nonskin/learned/ (extract.py, fit_skin_check.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from hypoderm.data.splits import Split
from hypoderm.inference.predictor import OnnxPredictor
from hypoderm.inference.preprocess import normalize_uint8
from hypoderm.inference.verdict import result_from_logits
from hypoderm.text import comma_list

BLOCK = Path("src/hypoderm/assets/skin_check.json")


def with_skin_check(md: dict) -> dict:
    """The model's metadata with the shipped skin check's rule (thresholds), as `predict` reads it."""
    return {**md, "ood": {**(md.get("ood") or {}), "skin_check": json.loads(BLOCK.read_text())}}


def batch_logits(predictor: OnnxPredictor, crops: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(len(rows), K) logits of the crops `rows`, 64 at a time."""
    if not len(rows):
        return np.zeros((0, len(predictor.class_names)), np.float32)
    return np.concatenate([predictor.predict_logits(np.stack([normalize_uint8(crops[j], predictor.spec)
                                                              for j in rows[i:i + 64]]))
                           for i in range(0, len(rows), 64)])


def statuses(model: Path, crops: np.ndarray, held: np.ndarray, rows: np.ndarray,
             abstain: float | None = None, answer: dict[str, float] | None = None) -> np.ndarray:
    """The status `predict` would give each crop in `rows` (others ""), with the held-out skin-check score (and,
    when given, another abstain threshold than the model's own, or per-class answer thresholds: what-if runs)."""
    predictor = OnnxPredictor(model)
    md = with_skin_check(predictor.metadata)
    if abstain is not None:
        md = {**md, "abstain_threshold": abstain}
    if answer:
        md = {**md, "answer_thresholds": answer}
    out = np.array([""] * len(crops), dtype=object)
    for j, lg in zip(rows, batch_logits(predictor, crops, rows), strict=True):
        score = float(held[j]) if np.isfinite(held[j]) else None
        out[j] = result_from_logits(lg, crops[j], md, source_side=None, skin_score=score)["status"]
    return out


def rates(st: np.ndarray, sel: np.ndarray) -> dict[str, float]:
    return {k: float(np.mean(st[sel] == v)) for k, v in (("refused", "not_skin"), ("uncertain", "uncertain"),
                                                          ("ok", "ok"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("npz", type=Path)
    ap.add_argument("held", type=Path)
    ap.add_argument("split", type=Path, help="the runs' split file: its validation fold gives the skin photos")
    ap.add_argument("--val-fold", type=int, default=1)
    ap.add_argument("--held-runs", "--held", nargs="+", type=Path, required=True,
                    help="run folders trained with --outliers-exclude (their model.int8w.onnx and best.pt)")
    ap.add_argument("--final", type=Path, required=True, help="the run trained with every non-skin origin")
    ap.add_argument("--compare", nargs="*", default=[], metavar="NAME=MODEL.onnx")
    ap.add_argument("--held-abstain", type=float, default=None,
                    help="what-if: judge the --held runs' answers at this abstain threshold instead of their own")
    ap.add_argument("--answer-threshold", action="append", default=[], metavar="CLASS=P",
                    help="what-if: every model answers CLASS only at probability >= P (hypoderm export's flag)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("end_to_end.json"))
    args = ap.parse_args()
    answer = {k: float(v) for k, v in (item.rsplit("=", 1) for item in args.answer_threshold)}
    z, h = np.load(args.npz), np.load(args.held)
    crops, side, origin, view, category, names = (z[k] for k in ("crops", "side", "origin", "view", "category",
                                                                  "name"))
    held = h["held"]
    val = {s.path for s in Split.load(args.split).samples if s.fold == args.val_fold}
    is_val = np.array([str(n) in val for n in names]) & (side == "skin")
    nonskin = side == "nonskin"
    test = side == "synthetic_test"

    # real OE, held out: each non-skin origin through the model that never saw it; the rest through the final model
    real = np.array([""] * len(crops), dtype=object)
    excluded_by: dict[str, str] = {}
    for run in args.held_runs:
        cfg = torch.load(run / "best.pt", map_location="cpu", weights_only=False)["config"]
        out_origins = comma_list(cfg.get("outliers_exclude"))
        rows = np.where(nonskin & np.isin(origin, out_origins))[0]
        real[rows] = statuses(run / "model.int8w.onnx", crops, held, rows, args.held_abstain, answer)[rows]
        excluded_by.update({o: run.name for o in out_origins})
    rest = np.where(is_val | test | (nonskin & ~np.isin(origin, list(excluded_by))))[0]
    real[rest] = statuses(args.final / "model.int8w.onnx", crops, held, rest, answer=answer)[rest]
    models = {"real_oe_held_out": real}
    everything = np.where(is_val | test | nonskin)[0]
    for item in args.compare:
        label, path = item.split("=", 1)
        models[label] = statuses(Path(path), crops, held, everything, answer=answer)

    out_rows = []
    for s_name, base in (("skin (validation fold)", is_val), ("not skin", nonskin), ("synthetic TEST", test)):
        for o in sorted(set(origin[base])):
            for v in ("centre", "closeup"):
                sel = base & (origin == o) & (view == v)
                if not sel.any():
                    continue
                row: dict = {"side": s_name, "origin": o, "view": v, "n": int(sel.sum()),
                             "held_out_by": excluded_by.get(o, "")}
                for label, st in models.items():
                    row[label] = rates(st, sel)
                    sc = sel & (category == "skin_coloured")
                    if sc.any() and s_name == "not skin":
                        row[label]["skin_coloured_ok"] = float(np.mean(st[sc] == "ok"))
                        row[label]["skin_coloured_n"] = int(sc.sum())
                out_rows.append(row)
                print(json.dumps(row), flush=True)
    totals = {}
    for label, st in models.items():
        totals[label] = {f"{k} {v}": rates(st, base & (view == v)) for k, base in
                         (("skin", is_val), ("not skin", nonskin), ("synthetic TEST", test)) for v in
                         ("centre", "closeup") if (base & (view == v)).any()}
    print(json.dumps(totals, indent=1))
    args.out.write_text(json.dumps({"command": "benchmarks/nonskin/real_oe/end_to_end.py", "excluded_by": excluded_by,
                                    "held_abstain": args.held_abstain, "answer_thresholds": answer,
                                    "rows": out_rows, "totals": totals}, indent=1) + "\n")


if __name__ == "__main__":
    main()
