"""Margin of every model of the recorded comparison study over the photo-style baseline, same folds.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/data_audit/shortcut_margins.py \
        ../shared/data/hypopigmented benchmarks/comparison/h200_224

Reads the study's split.json and each models/<name>/summary.json + pooled_test_predictions.npz (packed in
models.json and models.npz by benchmarks/summarize.py, or on disk)
(no training, no latency measurement: `hypoderm compare` would re-time every model), fits the
baseline of `hypoderm.data.shortcut` on the same split and prints a Markdown table.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import numpy as np
import sklearn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import summarize  # noqa: E402

from hypoderm.data.dataset import load_index  # noqa: E402
from hypoderm.data.shortcut import (  # noqa: E402
    BORDER_FEATURES,
    FEATURE_NAMES,
    FILE_FEATURES,
    GEOMETRY_FEATURES,
    MODEL_TITLES,
    SKIN_FEATURES,
    shortcut_baseline,
)
from hypoderm.data.splits import Split  # noqa: E402
from hypoderm.metrics import macro_f1  # noqa: E402


def main(data: str, study: str) -> None:
    t0 = time.perf_counter()
    study_dir = Path(study)
    split = Split.load(study_dir / "split.json")
    base = shortcut_baseline(load_index(data), split)
    elapsed = time.perf_counter() - t0
    best = base.models[base.best]
    b_fold = base.fold_macro_f1()
    print(f"baseline on {study_dir / 'split.json'}: {base.summary()}\n")
    print(f"fitted in {elapsed:.1f} s (feature extraction included); {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, scikit-learn {sklearn.__version__}, numpy {np.__version__}\n")
    print("| model | macro-F1 mean ± std | margin (mean) | folds CNN > baseline | macro-F1 pooled | margin (pooled) |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| style baseline ({MODEL_TITLES[base.best]}) | {best.macro_f1_mean:.3f} ± {best.macro_f1_std:.3f} | - | - "
          f"| {best.pooled_macro_f1:.3f} | - |")
    rows = []
    models = summarize.read(study_dir / "models")
    for rel in sorted(r for r in models if r.count("/") == 1 and r.endswith("/summary.json")):
        name = rel.split("/")[0]
        s = models[rel]
        folds = {int(f): m["macro_f1"] for f, m in s["per_fold"].items()}
        if len(folds) < split.folds:
            print(f"skipped {name}: {len(folds)} of {split.folds} folds", file=sys.stderr)
            continue
        z = summarize.arrays(study_dir / "models", f"{name}/pooled_test_predictions.npz")
        pooled = macro_f1(z["y_true"], z["probs"].argmax(axis=1), len(split.class_names))
        wins = sum(folds[f] > b_fold[f] for f in folds)
        rows.append((s["mean"]["macro_f1"], name, s["std"]["macro_f1"], wins, pooled))
    for mean, name, std, wins, pooled in sorted(rows, reverse=True):
        print(f"| {name} | {mean:.3f} ± {std:.3f} | {mean - best.macro_f1_mean:+.3f} | {wins}/{split.folds} "
              f"| {pooled:.3f} | {pooled - best.pooled_macro_f1:+.3f} |")

    # Which feature families carry it? The same baseline on subsets (features reused, not re-extracted).
    cached = dict(zip(base.paths, base.features, strict=True))
    subsets = {"no skin features (geometry, border, sharpness, colourfulness, file)":
               [n for n in FEATURE_NAMES if n not in SKIN_FEATURES],
               "skin features only (skin share, skin RGB mean/std, ITA)": list(SKIN_FEATURES),
               "geometry and file only (width, height, aspect, bytes/pixel, EXIF)":
               list(GEOMETRY_FEATURES + FILE_FEATURES),
               "border only (5 px border colour, std, skin share)": list(BORDER_FEATURES)}
    print("\n| features | logistic regression macro-F1 | random forest macro-F1 | ROC-AUC (better model) |")
    print("|---|---:|---:|---:|")
    for title, names in subsets.items():
        sub = shortcut_baseline(load_index(data), split, features=cached, names=names)
        print(f"| {title} | {sub.models['logreg'].macro_f1_mean:.3f} ± {sub.models['logreg'].macro_f1_std:.3f} "
              f"| {sub.models['forest'].macro_f1_mean:.3f} ± {sub.models['forest'].macro_f1_std:.3f} "
              f"| {sub.auc:.3f} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
