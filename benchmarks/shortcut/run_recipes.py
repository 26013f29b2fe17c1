"""Compare training recipes on ordinary cross-validation and on the style-shift views (issue 11).

    python benchmarks/shortcut/run_recipes.py --data ../shared/data/hypopigmented \
        --recipes standard,skin,crop-tone,crop --size 128 --epochs 30 --out benchmarks/shortcut/runs

For each recipe: `hypoderm cv` on the study's split (resumable: finished folds are kept), then every
fold's best checkpoint is scored on the style-shift views of its own test fold
(hypoderm.engine.styleshift). Writes OUT/RECIPE/styleshift.json and prints one table. Each run's files are then
packed into OUT.json (benchmarks/summarize.py; unpacked first, so a re-run resumes; checkpoints and predictions
stay on disk).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import summarize  # noqa: E402

from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from hypoderm.data.splits import Split  # noqa: E402
from hypoderm.engine.cache import DecodedCache  # noqa: E402
from hypoderm.engine.config import TrainConfig  # noqa: E402
from hypoderm.engine.cv import run_cv  # noqa: E402
from hypoderm.engine.fold import readable_index  # noqa: E402
from hypoderm.engine.styleshift import VIEWS, evaluate_views, view_metrics  # noqa: E402
from hypoderm.inference import softmax  # noqa: E402
from hypoderm.inference.preprocess import PreprocessSpec  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_SPLIT = HERE.parent / "comparison" / "h200_224" / "split.json"


def _predict(model: torch.nn.Module, t: float, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return softmax(model(x).numpy(), t)


def score_recipe(run: Path, data: str, split_path: Path, cache: DecodedCache) -> dict:
    """Style-shift metrics of every fold's best.pt on its test fold, pooled over folds."""
    index, _ = readable_index(data, None, False, cache)
    all_labels = index.labels()
    split = Split.load(split_path)
    pooled: dict[str, dict[str, list]] = {v: {"probs": [], "y": [], "thr": []} for v in VIEWS}
    per_fold = {}
    for f in range(split.folds):
        ckpt = load_checkpoint(run / f"fold{f}" / "best.pt")
        model = model_from_checkpoint(ckpt).eval()
        t = float(ckpt["temperature"])
        thr = float(ckpt["abstain_threshold"])
        _, _, test_idx = split.partition(f)
        images = [cache.get(index.samples[i].path) for i in test_idx]
        labels = [int(all_labels[i]) for i in test_idx]
        keys = [index.relpath(index.samples[i]) for i in test_idx]
        res = evaluate_views(functools.partial(_predict, model, t), images, labels, keys, cache.spec, thr)
        per_fold[f] = {v: {k: m for k, m in r.items() if k not in ("probs", "source")} for v, r in res.items()}
        for v, r in res.items():
            pooled[v]["probs"].append(r["probs"])
            pooled[v]["y"].append(np.asarray(labels)[r["source"]])
            pooled[v]["thr"].append(np.full(len(r["source"]), thr))
    out = {"per_fold": per_fold, "pooled": {}}
    for v, p in pooled.items():
        probs, y = np.concatenate(p["probs"]), np.concatenate(p["y"])
        # each fold has its own abstain threshold: "answered" pools the per-fold decisions
        m = view_metrics(probs, y, threshold=0.0)
        answered = probs.max(1) >= np.concatenate(p["thr"])
        m["answered"] = float(answered.mean())
        m["answered_accuracy"] = (float((probs.argmax(1)[answered] == y[answered]).mean()) if answered.any()
                                  else float("nan"))
        out["pooled"][v] = m
    return out


def baseline_on_views(data: str, split_path: Path, cache: DecodedCache) -> dict:
    """The trivial photo-feature baseline (hypoderm.data.shortcut) under the same folds: on the whole
    test photos, and on each style-shift view, fitted either on the training folds' whole photos or on the
    same view of the training folds (pixel features only, so both see the same columns). Pooled over folds."""
    from PIL import Image

    from hypoderm.data.shortcut import PIXEL_FEATURES, file_features, fit_baseline, photo_features, predict_baseline
    from hypoderm.engine.styleshift import build_views

    index, _ = readable_index(data, None, False, cache)
    split = Split.load(split_path)
    labels = index.labels()
    keys = [index.relpath(s) for s in index.samples]
    whole = [file_features(s.path) for s in index.samples]
    views = build_views([cache.get(s.path) for s in index.samples], keys, cache.spec)
    view_feats = {v: [photo_features(Image.fromarray(x.permute(1, 2, 0).numpy())) for x in ims]
                  for v, (ims, _) in views.items()}
    results: dict[str, dict[str, list]] = {}

    def add(name: str, fitted: Any, feats: list, y: np.ndarray) -> None:
        r = results.setdefault(name, {"probs": [], "y": []})
        r["probs"].append(predict_baseline(fitted, feats))
        r["y"].append(np.asarray(y))

    for f in range(split.folds):
        tr_idx, va_idx, te_idx = split.partition(f)
        fit_idx = sorted(tr_idx + va_idx)
        full = fit_baseline([whole[i] for i in fit_idx], labels[fit_idx])
        add("whole photos (all features)", full, [whole[i] for i in te_idx], labels[te_idx])
        pix = fit_baseline([whole[i] for i in fit_idx], labels[fit_idx], names=PIXEL_FEATURES)
        for v, (_, src) in views.items():
            fit_rows = [j for j, s in enumerate(src) if s in set(fit_idx)]
            test_rows = [j for j, s in enumerate(src) if s in set(te_idx)]
            add(f"{v} (fitted on whole photos)", pix, [view_feats[v][j] for j in test_rows], labels[src[test_rows]])
            own = fit_baseline([view_feats[v][j] for j in fit_rows], labels[src[fit_rows]], names=PIXEL_FEATURES)
            add(f"{v} (fitted on the same view)", own, [view_feats[v][j] for j in test_rows], labels[src[test_rows]])
    out = {}
    for name, r in results.items():
        probs, y = np.concatenate(r["probs"]), np.concatenate(r["y"])
        out[name] = view_metrics(probs, y, threshold=0.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/hypopigmented")
    ap.add_argument("--recipes", default="standard,skin,crop-tone,crop")
    ap.add_argument("--model", default="hypodermnet")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--patience", type=int, default=10, help="early stopping patience in epochs")
    ap.add_argument("--split", default=str(DEFAULT_SPLIT))
    ap.add_argument("--out", default=str(HERE / "runs"))
    ap.add_argument("--counterfactual", default=None, help="NORMAL:LESION, e.g. normal_skin:vitiligo")
    ap.add_argument("--counterfactual-p", type=float, default=0.3)
    ap.add_argument("--baseline", action="store_true", help="also score the trivial photo-feature baseline")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 is fastest on a loaded 2-core machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = PreprocessSpec.for_size(args.size)
    cache = DecodedCache(spec)
    rows = []
    if args.baseline:
        base = baseline_on_views(args.data, Path(args.split), cache)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"baseline-{args.size}.json").write_text(json.dumps(base, indent=1) + "\n")
        summarize.pack(Path(args.out), arrays=False, under=f"baseline-{args.size}.json")
        print("| trivial baseline (logistic regression), pooled over test folds | ROC-AUC | macro-F1 |")
        for name, m in base.items():
            print(f"| {name} | {m['roc_auc']:.3f} | {m['macro_f1']:.3f} |")
    for recipe in filter(None, args.recipes.split(",")):
        tag = f"-cf{args.counterfactual_p:g}" if args.counterfactual else ""
        tag += f"-p{args.patience}" if args.patience != 10 else ""
        run = Path(args.out) / f"{args.model}-{recipe}{tag}-{args.size}-e{args.epochs}"
        t0 = time.perf_counter()
        summarize.unpack(Path(args.out), under=run.name)
        cfg = TrainConfig(data=args.data, model=args.model, split=args.split, size=args.size, epochs=args.epochs,
                          batch_size=args.batch_size, recipe=recipe, seed=0, progress=False, device="cpu", out=str(run),
                          counterfactual=args.counterfactual, counterfactual_p=args.counterfactual_p,
                          patience=args.patience)
        summary = run_cv(cfg, run, n_bootstrap=200)
        shift = score_recipe(run, args.data, Path(args.split), cache)
        shift["cv"] = {k: summary["mean"][k] for k in ("accuracy", "macro_f1", "roc_auc_ovr")}
        shift["cv_std"] = {k: summary["std"][k] for k in ("accuracy", "macro_f1", "roc_auc_ovr")}
        shift["wall_s"] = time.perf_counter() - t0
        (run / "styleshift.json").write_text(json.dumps(shift, indent=1) + "\n")
        summarize.pack(Path(args.out), arrays=False, under=run.name)
        rows.append((run.name, shift))
        print(f"{run.name}: cv macro-F1 {shift['cv']['macro_f1']:.3f}; " + "; ".join(
            f"{v} AUC {m['roc_auc']:.3f} F1 {m['macro_f1']:.3f} answered {m['answered']:.2f}"
            for v, m in shift["pooled"].items()), flush=True)
    view_columns = " | ".join(f"{v} AUC | {v} macro-F1 | {v} answered" for v in VIEWS)
    print(f"\n| recipe | CV macro-F1 | CV AUC | {view_columns} |")
    for recipe, s in rows:
        print(f"| {recipe} | {s['cv']['macro_f1']:.3f} ± {s['cv_std']['macro_f1']:.3f} "
              f"| {s['cv']['roc_auc_ovr']:.3f} | "
              + " | ".join(f"{s['pooled'][v]['roc_auc']:.3f} | {s['pooled'][v]['macro_f1']:.3f} | "
                           f"{s['pooled'][v]['answered']:.2f}" for v in VIEWS) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
