"""The held-out-origin table of one recipe's runs, as MODEL_CARD.md and benchmarks/origins/README.md print it: one
row per (held-out origin, testable class), from every `NAME/holdout*/summary.json` packed in screen.json (or
runs.json), so that runs of single folds (holdout_fold.sh with SUB=holdout-fN) make one table.

    .venv/bin/python benchmarks/origins/heldout_rows.py v2-imagenet-cf-realoe [--pack benchmarks/origins/screen.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def pct(x: float) -> str:
    return f"{round(100 * x)}%"


def rows(pack: dict, name: str) -> list[tuple[str, str, list[str]]]:
    """(origin, class, cells) for every testable class of every held-out origin of run `name`."""
    out = []
    for key in sorted(k for k in pack if k.startswith(f"{name}/holdout") and k.endswith("/summary.json")):
        h = pack[key]["holdout"]
        base = h["baseline"]["reports"]
        for origin, report in h["model"].items():
            for cls, r in report["per_class"].items():
                if not r.get("testable"):
                    continue
                others = [f"{c} {pct(v)}" for c, v in sorted(r["called"].items(), key=lambda kv: -kv[1])
                          if c != cls and v >= 0.005]
                cells = [f"`{origin}`", f"{cls} ({r['n']})", pct(r["recall"]), ", ".join(others) or "-",
                         pct(r["answered"]), pct(r["called_ok"].get("vitiligo", 0.0)),
                         pct(base[origin]["per_class"][cls]["recall"])]
                out.append((origin, cls, cells))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--pack", type=Path, default=Path(__file__).with_name("screen.json"))
    args = ap.parse_args()
    print("| held out | class (n) | recall | mistaken for | answered (ok) | \"vitiligo\" answered (ok) | "
          "photo-style baseline recall |")
    print("|---|---|---|---|---|---|---|")
    for _, _, cells in rows(json.loads(args.pack.read_text()), args.name):
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
