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


def grid_order(model: str) -> tuple[bool, int, str]:
    """Sort key: the ablation grid's order first, then any other model by name."""
    return model not in GRID, list(GRID).index(model) if model in GRID else 0, model


def paired_row(model: str, a: dict[int, dict], b: dict[int, dict]) -> tuple[str, float, float] | None:
    """One table row comparing two runs of `model` on their common folds (fold -> metrics.json): macro-F1 of A and
    B (mean ± std), B − A per fold (mean ± std) and on how many folds B is ahead, accuracy of A and B; with the two
    mean macro-F1s. None when they share no fold."""
    folds = sorted(set(a) & set(b))
    if not folds:
        return None
    af, bf = np.array([a[f]["macro_f1"] for f in folds]), np.array([b[f]["macro_f1"] for f in folds])
    aa, ba = np.array([a[f]["accuracy"] for f in folds]), np.array([b[f]["accuracy"] for f in folds])
    d = bf - af
    row = (f"| {model} | {af.mean():.3f} ± {af.std(ddof=1):.3f} | {bf.mean():.3f} ± {bf.std(ddof=1):.3f} | "
           f"{d.mean():+.3f} ± {d.std(ddof=1):.3f} | {int((d > 0).sum())} of {len(folds)} | "
           f"{aa.mean():.3f} | {ba.mean():.3f} |")
    return row, float(af.mean()), float(bf.mean())


def effect_rows(a: dict[str, float], b: dict[str, float]) -> list[str]:
    """'| change | A's pairs (mean) | B's pairs (mean) |' for each of the paper's changes measured in both."""
    out = []
    for name, ea, eb in zip(CHANGES, effects(a), effects(b), strict=True):
        if ea and eb:
            out.append(f"| {name} | {', '.join(f'{x:+.3f}' for x in ea)} (mean {np.mean(ea):+.3f}) | "
                       f"{', '.join(f'{x:+.3f}' for x in eb)} (mean {np.mean(eb):+.3f}) |")
    return out


def protocol_line(cfg: dict, label: str) -> str:
    """The study's protocol from a model's cv_config.json."""
    return (f"Protocol ({label}): data `{cfg['data']}`, split `{cfg['split']}`, {cfg['size']} px, {cfg['epochs']} "
            f"epochs, batch {cfg['batch_size']}, lr {cfg['lr']}, recipe {cfg.get('recipe')}, outlier exposure "
            f"{cfg.get('outlier_exposure')}; ImageNet start: `{cfg.get('pretrained')}`.")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("scratch", type=Path)
    ap.add_argument("imagenet", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    files = {k: read(d / "models") for k, d in (("scratch", args.scratch), ("imagenet", args.imagenet))}
    models = sorted({rel.split("/")[0] for f in files.values() for rel in f}, key=grid_order)
    lines = ["| model | scratch macro-F1 | ImageNet macro-F1 | ImageNet − scratch, per fold | ImageNet ahead | "
             "scratch accuracy | ImageNet accuracy |", "|---|---|---|---|---|---|---|"]
    means: dict[str, dict[str, float]] = {"scratch": {}, "imagenet": {}}
    for m in models:
        pair = paired_row(m, fold_metrics(files["scratch"], m), fold_metrics(files["imagenet"], m))
        if pair is not None:
            lines.append(pair[0])
            means["scratch"][m], means["imagenet"][m] = pair[1], pair[2]
    lines += ["", "Effect of each of the paper's changes on mean macro-F1, over the pairs of variants that differ only "
              "in it (mean of the pairs):", "", "| change | from scratch | from ImageNet |", "|---|---|---|"]
    lines += effect_rows(means["scratch"], means["imagenet"])
    lines += ["", protocol_line(files["imagenet"][f"{models[0]}/cv_config.json"], "both starts")]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
