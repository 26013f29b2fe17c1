"""Close-ups of the test photos, as a user frames them in the app: what each fold's model answers on them.

For every fold of a recipe run (runs/NAME/holdout and runs/NAME/cv, written by run_recipe.sh), each test photo
gives 3 seeded square close-ups centred on skin (30-50% of the shorter side; hypoderm.engine.styleshift, the
same views for every model). The fold's own checkpoint (temperature and abstain threshold fitted on its
validation photos) scores them; per true class: the share called each class, and the share *answered* each class
(top probability >= the abstain threshold: what `predict` would say with status ok, before the not-skin gate).
Held-out folds tell how close-ups of healthy skin from a source the model never saw are answered; note that a
close-up of a vitiligo photo may miss the patches, so vitiligo rows are a lower bound.

    .venv/bin/python benchmarks/origins/closeup_views.py crop-tone crop-tone-oe > benchmarks/origins/closeups.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def fold_rows(fold_dir: Path) -> list[tuple[str, str, np.ndarray, float]]:
    """(held-out value or 'cv', true class, probabilities of each close-up, abstain threshold) of one fold."""
    import torch

    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.data.dataset import load_index
    from hypoderm.engine.cache import DecodedCache
    from hypoderm.engine.evaluate import _split_from_checkpoint
    from hypoderm.engine.styleshift import closeups
    from hypoderm.inference import softmax
    from hypoderm.inference.preprocess import PreprocessSpec, normalize_uint8

    ckpt = load_checkpoint(fold_dir / "best.pt")
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    split = _split_from_checkpoint(ckpt)  # the split the fold trained on, stored in its checkpoint
    index = load_index(ckpt["config"]["data"])
    by_path = {index.relpath(s): s for s in index.samples}
    fold = int(ckpt["config"]["fold"])
    _, _, test = split.partition(fold)
    model = model_from_checkpoint(ckpt).eval()
    cache = DecodedCache(spec, ckpt["config"].get("cache_dir"))
    value = split.fold_name(fold).split("=")[-1] if split.holdout else "cv"
    out = []
    for i in test:
        s = split.samples[i]
        img = cache.get(by_path[s.path].path)
        views = closeups(img, spec.size, s.path)
        x = np.stack([normalize_uint8(np.ascontiguousarray(v.permute(1, 2, 0).numpy()), spec) for v in views])
        with torch.inference_mode():
            logits = model(torch.from_numpy(x)).double().numpy()
        out.append((value, s.label, softmax(logits, float(ckpt["temperature"])), float(ckpt["abstain_threshold"])))
    return out


def main() -> int:
    import torch

    torch.set_num_threads(1)
    results = {}
    lines = ["| recipe | protocol | held out | true class | close-ups | called normal / other / vitiligo | "
             "answered normal / other / vitiligo (status ok) |", "|---|---|---|---|---|---|---|"]
    for name in sys.argv[1:]:
        for part in ("holdout", "cv"):
            rows: list[tuple[str, str, np.ndarray, float]] = []
            for fold_dir in sorted((HERE / "runs" / name / part).glob("fold*")):
                if (fold_dir / "best.pt").is_file():
                    rows += fold_rows(fold_dir)
            cells: dict[tuple[str, str], list[tuple[np.ndarray, float]]] = {}
            for value, label, probs, thr in rows:
                cells.setdefault((value, label), []).append((probs, thr))
            for (value, label), items in sorted(cells.items()):
                probs = np.concatenate([p for p, _ in items])
                thr = np.concatenate([np.full(len(p), t) for p, t in items])
                pred, ok = probs.argmax(1), probs.max(1) >= thr
                called = [float(np.mean(pred == k)) for k in range(3)]
                answered = [float(np.mean((pred == k) & ok)) for k in range(3)]
                results[f"{name}/{part}/{value}/{label}"] = {"n": len(probs), "called": called, "answered": answered}
                lines.append(f"| {name} | {part} | {value} | {label} | {len(probs)} | "
                             + " / ".join(f"{c:.0%}" for c in called) + " | "
                             + " / ".join(f"{a:.0%}" for a in answered) + " |")
    (HERE / "closeups.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
