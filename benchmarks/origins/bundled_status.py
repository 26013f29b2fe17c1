"""What an exported model (default: the bundled one) answers, end to end through `OnnxPredictor` (not-skin gate,
abstain threshold, everything `hypoderm predict` does), on

- every photo of a manifest (default: the multisource development set), by origin and class: answered right,
  answered wrong (and as what), uncertain (withheld), refused as not skin; with a split file, the validation
  fold (photos the model did not train on; it chose the epoch and the thresholds) apart from the training folds;
- pictures that are not skin: the synthetic TEST suite of `hypoderm.data.nonskin` (seeds the gate and the outlier
  bank never saw) and the real sample photos of installed packages (the outlier-exposure bank DID train on these:
  not held out for a model trained with --outlier-exposure).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/origins/bundled_status.py \\
        [--model src/hypoderm/assets/model.onnx] [--data ../shared/data/multisource/index.csv] \\
        [--split runs/bundled/split.json] [--out benchmarks/origins/bundled_status.json] > bundled_status.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from hypoderm.data import nonskin
from hypoderm.data.dataset import load_index
from hypoderm.data.splits import Split, column_value
from hypoderm.imaging.io import load_rgb
from hypoderm.inference import OnnxPredictor, bundled_model
from hypoderm.text import pct

OUTCOMES = ("right", "wrong", "uncertain", "not_skin")


def outcome(result: dict[str, Any], label: str | None) -> str:
    if result["status"] == "ok":
        return "right" if result["answer"] == label else "wrong"
    return str(result["status"])


def row(counts: Counter, extra: str = "") -> str:
    n = sum(counts.values())
    return " | ".join([str(n), *(f"{counts[o]} ({pct(counts[o] / n)})" if n else "-" for o in OUTCOMES)]) + extra


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(bundled_model()))
    ap.add_argument("--data", default="../shared/data/multisource/index.csv")
    ap.add_argument("--split", default=None, help="the model's split file: validation fold reported apart")
    ap.add_argument("--val-fold", type=int, default=1, help="the validation fold of a --final run (fold 0 -> 1)")
    ap.add_argument("--test-per-family", type=int, default=65)
    ap.add_argument("--out", default=None, help="also write the counts as JSON")
    ap.add_argument("--nonskin-only", action="store_true", help="only the pictures that are not skin")
    args = ap.parse_args()
    t0 = time.time()
    predictor = OnnxPredictor(args.model, threads=int(os.environ.get("OMP_NUM_THREADS", "1")))
    index = load_index(args.data)
    samples = [] if args.nonskin_only else index.samples
    fold_of: dict[str, int] = {}
    if args.split:
        for s in Split.load(args.split).samples:
            fold_of[s.path] = s.fold
    cells: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    wrong_as: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    for sample in samples:
        img = load_rgb(sample.path)
        label = sample.label
        origin = column_value(sample, "origin")
        rel = index.relpath(sample)
        part = ("validation" if fold_of.get(rel) == args.val_fold else "training") if fold_of else "all"
        r = predictor.predict_image(img, top_k=3)
        o = outcome(r, label)
        cells[(part, origin, label)][o] += 1
        if o == "wrong":
            wrong_as[(part, origin, label)][r["answer"]] += 1
    nonskin_counts: dict[str, Counter] = defaultdict(Counter)
    for family, img in nonskin.suite(args.test_per_family, 0, nonskin.TEST):
        nonskin_counts[f"synthetic TEST: {family}"][outcome(predictor.predict_image(img), None)] += 1
    for _name, img in nonskin.sample_photos():
        nonskin_counts["sample photos (in the OE bank)"][outcome(predictor.predict_image(img), None)] += 1

    print(f"model {args.model} ({predictor.metadata.get('model_name')}, classes {predictor.class_names}); data "
          f"{args.data}; {platform.machine()}, {os.cpu_count()} logical CPUs, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}, {time.time() - t0:.0f} s\n")
    print("## Real photos\n\n| part | origin | class | n | answered right | answered wrong | uncertain | not skin "
          "| wrong answers |\n|---|---|---|---|---|---|---|---|---|")
    for (part, origin, label), c in sorted(cells.items()):
        wrong = ", ".join(f"{k} {v}" for k, v in wrong_as[(part, origin, label)].most_common())
        print(f"| {part} | {origin} | {label} | {row(c)} | {wrong if c['wrong'] else ''} |")
    print("\n## Pictures that are not skin (any answer is wrong)\n\n| set | n | answered (ok) | - | uncertain | "
          "not skin |\n|---|---|---|---|---|---|")
    total: Counter = Counter()
    for name, c in nonskin_counts.items():
        c2 = Counter({"right": 0, "wrong": c["wrong"], "uncertain": c["uncertain"], "not_skin": c["not_skin"]})
        if name.startswith("synthetic"):
            total.update(c2)
        n = sum(c2.values())
        print(f"| {name} | {n} | {c2['wrong']} ({pct(c2['wrong'] / n)}) | | {c2['uncertain']} "
              f"({pct(c2['uncertain'] / n)}) | {c2['not_skin']} ({pct(c2['not_skin'] / n)}) |")
    n = sum(total.values())
    print(f"| **synthetic TEST, all** | {n} | {total['wrong']} ({pct(total['wrong'] / n)}) | | {total['uncertain']} "
          f"({pct(total['uncertain'] / n)}) | {total['not_skin']} ({pct(total['not_skin'] / n)}) |")
    if args.out:
        doc = {"model": args.model, "data": args.data, "split": args.split,
               "photos": [{"part": p, "origin": o, "class": lab, **dict(c),
                           "wrong_as": dict(wrong_as[(p, o, lab)])} for (p, o, lab), c in sorted(cells.items())],
               "nonskin": {k: dict(v) for k, v in nonskin_counts.items()}}
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
