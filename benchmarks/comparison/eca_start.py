"""How ECA's 1-D kernels start inside an ImageNet network: PyTorch's random kernel against zero (issue 26, item 2).

ECA replaces MobileNetV3's SE blocks, which have no 1-D kernel to load, so from ImageNet its kernels are the only
fresh weights in the trunk. `cpu_128_imagenet` ran with the random start (PyTorch's default, as the ECA-Net code);
`cpu_128_imagenet_ecazero` repeats its ECA variants, same split and flags, with every fresh kernel at zero (each
channel's gate 0.5, which the batch norm after the projection absorbs; hypoderm.models.registry.zero_fresh_attention).
Writes one table per model (per-fold difference) and the paper's three changes measured again from ImageNet with the
zero start (pairs of variants differing only in one change; the SE variants come from `cpu_128_imagenet`).

    python benchmarks/comparison/eca_start.py benchmarks/comparison/cpu_128_imagenet \
        benchmarks/comparison/cpu_128_imagenet_ecazero --out benchmarks/comparison/eca_start_128.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pretrained_vs_scratch import (  # noqa: E402  (this folder's script)
    effect_rows,
    fold_metrics,
    grid_order,
    paired_row,
    protocol_line,
)
from summarize import read  # noqa: E402  (benchmarks/summarize.py: a study's files, packed or on disk)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("random", type=Path, help="the study from ImageNet with random ECA kernels")
    ap.add_argument("zero", type=Path, help="the same ECA variants with zero ECA kernels")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rand, zero = read(args.random / "models"), read(args.zero / "models")
    models = sorted({rel.split("/")[0] for rel in zero}, key=grid_order)
    lines = ["| model | ECA random macro-F1 | ECA zero macro-F1 | zero − random, per fold | zero ahead | "
             "random accuracy | zero accuracy |", "|---|---|---|---|---|---|---|"]
    mean_rand: dict[str, float] = {}
    mean_zero: dict[str, float] = {}
    for m in sorted({rel.split("/")[0] for rel in rand}):
        r = fold_metrics(rand, m)
        if r:
            mean_rand[m] = float(np.mean([v["macro_f1"] for v in r.values()]))
    for m in models:
        pair = paired_row(m, fold_metrics(rand, m), fold_metrics(zero, m))
        if pair is not None:
            lines.append(pair[0])
            mean_zero[m] = pair[2]
    with_zero = {**mean_rand, **mean_zero}  # SE variants from the first study, ECA variants from the second
    lines += ["", "Effect of each of the paper's changes on mean macro-F1 from ImageNet, over the pairs of variants "
              "that differ only in it (mean of the pairs):", "",
              "| change | ECA kernels random | ECA kernels zero |", "|---|---|---|"]
    lines += effect_rows(mean_rand, with_zero)
    if "hypodermnet" in mean_zero and "mnv3s" in mean_rand:
        lines += ["", f"hypodermnet (ECA + Leaky-ReLU + 7x7-stage dilation) − mnv3s: "
                  f"{mean_rand['hypodermnet'] - mean_rand['mnv3s']:+.3f} with random ECA kernels, "
                  f"{mean_zero['hypodermnet'] - mean_rand['mnv3s']:+.3f} with zero ones."]
    lines += ["", protocol_line(zero[f"{models[0]}/cv_config.json"], "both")]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
