"""Collect the recipe runs of benchmarks/origins into one Markdown table (and results.json).

For each run folder (runs/NAME and screen/NAME, each with holdout/ and cv/ written by `hypoderm cv`): per
held-out origin and class, recall, what the class is called, how often "vitiligo" is answered with status ok;
beside it the ordinary cross-validation (macro-F1, vitiligo recall, ROC-AUC per class) and the photo-style
baseline on the same folds. Numbers only from the summary.json / metrics.json files the runs wrote.

    .venv/bin/python benchmarks/origins/collect.py > benchmarks/origins/results.md
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HEALTHY = "normal_skin"
LESION = "vitiligo"


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


def _f(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, spec)


def load(run: Path) -> dict[str, Any]:
    """What a run folder holds: held-out summary, ordinary-CV summary and per-fold metrics."""
    out: dict[str, Any] = {"name": run.name, "kind": run.parent.name}
    for part in ("holdout", "cv"):
        s = run / part / "summary.json"
        if s.is_file():
            out[part] = json.loads(s.read_text())
            out[f"{part}_folds"] = {int(p.parent.name[4:]): json.loads(p.read_text())
                                    for p in sorted((run / part).glob("fold*/metrics.json"))}
    return out


def holdout_rows(r: dict[str, Any]) -> list[str]:
    h = r["holdout"]["holdout"]
    base = (h.get("baseline") or {}).get("reports", {})
    rows = []
    for value, rep in h["model"].items():
        for true, row in rep["per_class"].items():
            if not row["testable"]:
                continue
            b = (base.get(value) or {}).get("per_class", {}).get(true)
            rows.append(f"| {r['name']} | {value} | {true} | {row['n']} | {_pct(row['recall'])} | "
                        f"{_pct(row['called'].get(LESION))} | {_pct(row.get('called_ok', {}).get(LESION))} | "
                        f"{_pct(row.get('answered'))} | {_pct(b['recall']) if b else '-'} |")
    return rows


def cv_cells(r: dict[str, Any]) -> list[str]:
    cv = r.get("cv")
    if not cv:
        return ["-"] * 6
    folds = r["cv_folds"]
    rec = [m["per_class"][LESION]["recall"] for m in folds.values() if LESION in m["per_class"]]
    aucs = {c: [m["per_class"][c]["roc_auc"] for m in folds.values()] for c in next(iter(folds.values()))["per_class"]}
    base = (cv.get("shortcut") or {}).get("macro_f1_mean")
    return [f"{len(folds)}", f"{_f(cv['mean']['macro_f1'])} ± {_f(cv['std'].get('macro_f1'))}",
            _f(sum(rec) / len(rec)) if rec else "-",
            ", ".join(f"{c} {_f(sum(v) / len(v))}" for c, v in aucs.items()),
            _f(base), _f(cv["mean"]["macro_f1"] - base) if base is not None else "-"]


def main() -> int:
    runs = [load(p) for kind in ("screen", "runs") for p in sorted((HERE / kind).glob("*")) if p.is_dir()]
    runs = [r for r in runs if "holdout" in r or "cv" in r]
    lines = ["## Held-out origin (testable rows): the model trained without the origin", "",
             "| recipe | held out | true class | n | recall | called vitiligo | vitiligo with status ok | answered "
             "(status ok) | style baseline recall |", "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if "holdout" in r:
            lines += holdout_rows(r)
    lines += ["", "## Ordinary cross-validation on the same data (test folds; mean ± std over the folds run)", "",
              "| recipe | folds run | macro-F1 | vitiligo recall | ROC-AUC per class (mean) | style baseline macro-F1 "
              "| margin |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['kind']}/{r['name']} | " + " | ".join(cv_cells(r)) + " |")
    print("\n".join(lines))
    with open(HERE / "results.json", "w") as f:
        json.dump({r["kind"] + "/" + r["name"]: {k: v for k, v in r.items() if k in ("holdout", "cv")} for r in runs},
                  f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
