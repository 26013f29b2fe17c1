"""Ordinary CV against held out, per origin: the recall of each (origin, class) on the test folds of an ordinary
cross-validation (every origin also in training), beside the same recipe's recall with that origin held out
(heldout_rows.py's run in screen.json). The gap is what ordinary CV credits to having seen the photo's source.

    .venv/bin/python benchmarks/origins/ordinary_cv_by_origin.py benchmarks/origins/ordinary_cv/mnv3s-bundled \
        v2-imagenet-cf-realoe-mnv3s --manifest ../shared/data/multisource/index-v2.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from heldout_rows import rows  # this folder's script: the held-out table's rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cv", type=Path, help="a `hypoderm cv` folder (its fold*/test_predictions.npz)")
    ap.add_argument("heldout", help="the held-out run's name in screen.json")
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("--pack", type=Path, default=Path(__file__).with_name("screen.json"))
    args = ap.parse_args()
    origin = {r["path"]: r["origin"] for r in csv.DictReader(args.manifest.open())}
    pairs: dict[tuple[str, str], list[bool]] = {}
    for f in sorted(args.cv.glob("fold*/test_predictions.npz")):
        z = np.load(f, allow_pickle=True)
        names = list(z["class_names"])
        for path, y, p in zip(z["paths"], z["y_true"], z["probs"], strict=True):
            pairs.setdefault((origin[str(path)], names[int(y)]), []).append(int(np.argmax(p)) == int(y))
    held = {(o, c): cells[2] for o, c, cells in rows(json.loads(args.pack.read_text()), args.heldout)}
    lines = ["| origin | class (n) | recall, ordinary CV | recall, origin held out |", "|---|---|---|---|"]
    for (o, c), hits in sorted(pairs.items()):
        recall = f"{round(100 * np.mean(hits))}%"
        lines.append(f"| `{o}` | {c} ({len(hits)}) | {recall} | {held.get((o, c), 'untestable')} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
