"""The MobileNetV3-Small family from scratch and from ImageNet, side by side (issue 26, item 2).

Reads two `hypoderm compare` study folders run with the same split and flags except `--pretrained` (their
`models/NAME/foldK/metrics.json`) and writes one markdown table: per model, macro-F1 and accuracy over the test
folds for both starts, the per-fold difference (ImageNet minus scratch: mean, and on how many folds it is ahead),
and, for each of the paper's three changes, its effect on macro-F1 over the pairs of variants that differ only in
it, for either start: "which of the paper's changes still help from a pretrained start".

    python benchmarks/comparison/pretrained_vs_scratch.py benchmarks/comparison/cpu_128_scratch \
        benchmarks/comparison/cpu_128_imagenet --out benchmarks/comparison/pretrained_vs_scratch_128.md
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from summarize import read  # noqa: E402  (benchmarks/summarize.py: a study's files, packed or on disk)

# the ablation grid: (ECA, Leaky-ReLU, dilation) of each variant
GRID = {"mnv3s": (0, 0, 0), "mnv3s-eca": (1, 0, 0), "mnv3s-lrelu": (0, 1, 0), "mnv3s-dil": (0, 0, 1),
        "mnv3s-eca-lrelu": (1, 1, 0), "mnv3s-eca-dil": (1, 0, 1), "mnv3s-lrelu-dil": (0, 1, 1),
        "mnv3s-eca-lrelu-dil": (1, 1, 1)}
CHANGES = ("ECA", "Leaky-ReLU", "dilation (14x14)")


def fold_metrics(files: dict[str, dict], model: str) -> dict[int, dict]:
    """{fold: metrics.json} of MODEL in a study's `models` files (as benchmarks/summarize.read gives them)."""
    out = {}
    for rel, content in files.items():
        m = re.fullmatch(rf"{re.escape(model)}/fold(\d+)/metrics\.json", rel)
        if m:
            out[int(m.group(1))] = content
    return out


def effects(scores: dict[str, float]) -> list[list[float]]:
    """For each change, macro-F1 with it minus without it, over the four pairs of the grid differing only in it."""
    by_flags = {flags: scores[m] for m, flags in GRID.items() if m in scores}
    out = []
    for i in range(3):
        diffs = []
        for flags, s in by_flags.items():
            if flags[i] == 1:
                other = tuple(0 if j == i else v for j, v in enumerate(flags))
                if other in by_flags:
                    diffs.append(s - by_flags[other])
        out.append(diffs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("scratch", type=Path)
    ap.add_argument("imagenet", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    files = {k: read(d / "models") for k, d in (("scratch", args.scratch), ("imagenet", args.imagenet))}
    models = sorted({rel.split("/")[0] for f in files.values() for rel in f},
                    key=lambda m: (m not in GRID, list(GRID).index(m) if m in GRID else 0, m))
    lines = ["| model | scratch macro-F1 | ImageNet macro-F1 | ImageNet − scratch, per fold | ImageNet ahead | "
             "scratch accuracy | ImageNet accuracy |", "|---|---|---|---|---|---|---|"]
    means: dict[str, dict[str, float]] = {"scratch": {}, "imagenet": {}}
    for m in models:
        s, i = fold_metrics(files["scratch"], m), fold_metrics(files["imagenet"], m)
        folds = sorted(set(s) & set(i))
        if not folds:
            continue
        sf = np.array([s[f]["macro_f1"] for f in folds])
        inf = np.array([i[f]["macro_f1"] for f in folds])
        sa = np.array([s[f]["accuracy"] for f in folds])
        ia = np.array([i[f]["accuracy"] for f in folds])
        means["scratch"][m], means["imagenet"][m] = float(sf.mean()), float(inf.mean())
        d = inf - sf
        lines.append(f"| {m} | {sf.mean():.3f} ± {sf.std(ddof=1):.3f} | {inf.mean():.3f} ± {inf.std(ddof=1):.3f} | "
                     f"{d.mean():+.3f} ± {d.std(ddof=1):.3f} | {int((d > 0).sum())} of {len(folds)} | "
                     f"{sa.mean():.3f} | {ia.mean():.3f} |")
    lines += ["", "Effect of each of the paper's changes on mean macro-F1, over the pairs of variants that differ only "
              "in it (mean of the pairs):", "", "| change | from scratch | from ImageNet |", "|---|---|---|"]
    es, ei = effects(means["scratch"]), effects(means["imagenet"])
    for name, a, b in zip(CHANGES, es, ei, strict=True):
        fa = ", ".join(f"{x:+.3f}" for x in a)
        fb = ", ".join(f"{x:+.3f}" for x in b)
        if a and b:
            lines.append(f"| {name} | {fa} (mean {np.mean(a):+.3f}) | {fb} (mean {np.mean(b):+.3f}) |")
    cfg = files["imagenet"][f"{models[0]}/cv_config.json"]
    lines += ["", f"Protocol (both starts): data `{cfg['data']}`, split `{cfg['split']}`, {cfg['size']} px, "
              f"{cfg['epochs']} epochs, batch {cfg['batch_size']}, lr {cfg['lr']}, recipe {cfg.get('recipe')}, "
              f"outlier exposure {cfg.get('outlier_exposure')}; ImageNet start: `{cfg.get('pretrained')}`."]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
