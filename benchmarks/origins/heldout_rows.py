"""The held-out-origin table of one recipe's runs, as MODEL_CARD.md and benchmarks/origins/README.md print it: one
row per (held-out origin, testable class), from every `NAME/holdout*/summary.json` packed in screen.json (or
runs.json), so that runs of single folds (holdout_fold.sh with SUB=holdout-fN) make one table.

    .venv/bin/python benchmarks/origins/heldout_rows.py v2-imagenet-cf-realoe [--pack benchmarks/origins/screen.json]

With `--beside NAME [NAME ...]` it prints one row per (origin, class) instead, each run a column: recall with its
95% Wilson interval, then (answered; "vitiligo" answered); a run that did not hold that origin out shows "-".

With `--seeds NAME [NAME ...]` the runs are the same recipe trained with other seeds: one column of recall per
run, then the mean over the runs that hold the row out and its range, and a last line counting the rows at >= 80%
for each run and for the mean (issue 26's goal), to see how much of a difference between recipes training noise
alone makes.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def pct(x: float) -> str:
    return f"{round(100 * x)}%"


def reports(pack: dict, name: str) -> list[tuple[str, str, dict, dict]]:
    """(origin, class, the model's per-class report, the photo-style baseline's) for every testable class of every
    held-out origin of run `name`."""
    out = []
    for key in sorted(k for k in pack if k.startswith(f"{name}/holdout") and k.endswith("/summary.json")):
        h = pack[key]["holdout"]
        base = h["baseline"]["reports"]
        for origin, report in h["model"].items():
            for cls, r in report["per_class"].items():
                if r.get("testable"):
                    out.append((origin, cls, r, base[origin]["per_class"][cls]))
    return out


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion p of n."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def rows(pack: dict, name: str) -> list[tuple[str, str, list[str]]]:
    """(origin, class, cells) for every testable class of every held-out origin of run `name`."""
    out = []
    for origin, cls, r, base in reports(pack, name):
        others = [f"{c} {pct(v)}" for c, v in sorted(r["called"].items(), key=lambda kv: -kv[1])
                  if c != cls and v >= 0.005]
        cells = [f"`{origin}`", f"{cls} ({r['n']})", pct(r["recall"]), ", ".join(others) or "-",
                 pct(r["answered"]), pct(r["called_ok"].get("vitiligo", 0.0)), pct(base["recall"])]
        out.append((origin, cls, cells))
    return out


def by_row(pack: dict, names: list[str]) -> list[tuple[str, list[dict | None]]]:
    """One entry per (origin, class) held out by any of the runs `names`: the row's label ("`origin` class (n)")
    and each run's per-class report, None where that run did not hold the origin out."""
    runs = [{(o, c): r for o, c, r, _ in reports(pack, n)} for n in names]
    out = []
    for origin, cls in sorted({k for run in runs for k in run}):
        got = [run.get((origin, cls)) for run in runs]
        n = next(r["n"] for r in got if r is not None)
        out.append((f"`{origin}` {cls} ({n})", got))
    return out


def beside(pack: dict, names: list[str]) -> list[str]:
    """Markdown lines: one row per (origin, class) held out by any of `names`, one column per run."""
    lines = ["| held out | " + " | ".join(f"`{n}`" for n in names) + " |", "|---|" + "---|" * len(names)]
    for label, got in by_row(pack, names):
        cells = []
        for r in got:
            if r is None:
                cells.append("-")
                continue
            lo, hi = wilson(r["recall"], r["n"])
            cells.append(f"{pct(r['recall'])} [{pct(lo)}-{pct(hi)}] ({pct(r['answered'])}; "
                         f"{pct(r['called_ok'].get('vitiligo', 0.0))})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def seeds(pack: dict, names: list[str], goal: float = 0.8) -> list[str]:
    """Markdown lines: one row per (origin, class), the recall of each run (seeds of one recipe), their mean and
    range; then the rows at >= goal per run and for the mean (over rows every run holds out)."""
    lines = ["| held out | " + " | ".join(f"`{n}`" for n in names) + " | mean | range |",
             "|---|" + "---|" * (len(names) + 2)]
    met = [0] * (len(names) + 1)
    complete = 0
    for label, got in by_row(pack, names):
        have = [r["recall"] for r in got if r is not None]
        mean = sum(have) / len(have)
        lines.append(f"| {label} | " + " | ".join("-" if r is None else pct(r["recall"]) for r in got)
                     + f" | {pct(mean)} | {round(100 * (max(have) - min(have)))} points |")
        if len(have) == len(names):
            complete += 1
            for i, g in enumerate([*have, mean]):
                met[i] += g >= goal
    lines.append(f"| rows at >= {pct(goal)} (of {complete} every run holds out) | "
                 + " | ".join(str(m) for m in met) + " | |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--pack", type=Path, default=Path(__file__).with_name("screen.json"))
    ap.add_argument("--beside", nargs="+", default=[], metavar="NAME", help="more runs, one column each")
    ap.add_argument("--seeds", nargs="+", default=[], metavar="NAME",
                    help="the same recipe with other seeds: recall per run, mean and range")
    args = ap.parse_args()
    pack = json.loads(args.pack.read_text())
    if args.seeds:
        print("\n".join(seeds(pack, [args.name, *args.seeds])))
        return
    if args.beside:
        print("\n".join(beside(pack, [args.name, *args.beside])))
        return
    print("| held out | class (n) | recall | mistaken for | answered (ok) | \"vitiligo\" answered (ok) | "
          "photo-style baseline recall |")
    print("|---|---|---|---|---|---|---|")
    for _, _, cells in rows(pack, args.name):
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
