"""Collect the recipe runs of benchmarks/origins into one Markdown table (and results.json).

For each run folder (runs/NAME and screen/NAME, each with holdout/ and cv/ written by `hypoderm cv`, packed into
runs.json and screen.json by benchmarks/summarize.py or still on disk): per
held-out origin and class, recall, what the class is called, how often "vitiligo" is answered with status ok;
beside it the ordinary cross-validation (macro-F1, vitiligo recall, ROC-AUC per class) and the photo-style
baseline on the same folds. Numbers only from the summary.json / metrics.json files the runs wrote.

    .venv/bin/python benchmarks/origins/collect.py [MANIFEST] > benchmarks/origins/results.md

(with MANIFEST, e.g. ../shared/data/multisource/index.csv: also recall by skin type and by estimated skin tone
for the full runs)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import summarize  # noqa: E402

from hypoderm.text import fmt, pct  # noqa: E402

HERE = Path(__file__).resolve().parent
HEALTHY = "normal_skin"
LESION = "vitiligo"


def load(kind: str, name: str, files: dict[str, Any]) -> dict[str, Any]:
    """What a run folder holds (FILES: summarize.read of runs/ or screen/): held-out summary, ordinary-CV
    summary and per-fold metrics."""
    out: dict[str, Any] = {"name": name, "kind": kind}
    for part in ("holdout", "cv"):
        s = files.get(f"{name}/{part}/summary.json")
        if s is not None:
            out[part] = s
            folds = sorted((rel.split("/")[2], m) for rel, m in files.items()
                           if rel.startswith(f"{name}/{part}/fold") and rel.endswith("/metrics.json"))
            out[f"{part}_folds"] = {int(fold[4:]): m for fold, m in folds}
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
            rows.append(f"| {r['kind']}/{r['name']} | {value} | {true} | {row['n']} | {pct(row['recall'])} | "
                        f"{pct(row['called'].get(LESION))} | {pct(row.get('called_ok', {}).get(LESION))} | "
                        f"{pct(row.get('answered'))} | {pct(b['recall']) if b else '-'} |")
    return rows


def cv_cells(r: dict[str, Any]) -> list[str]:
    cv = r.get("cv")
    if not cv:
        return ["-"] * 6
    folds = r["cv_folds"]
    rec = [m["per_class"][LESION]["recall"] for m in folds.values() if LESION in m["per_class"]]
    aucs = {c: [m["per_class"][c]["roc_auc"] for m in folds.values()] for c in next(iter(folds.values()))["per_class"]}
    base = (cv.get("shortcut") or {}).get("macro_f1_mean")
    return [f"{len(folds)}", f"{fmt(cv['mean']['macro_f1'])} ± {fmt(cv['std'].get('macro_f1'))}",
            fmt(sum(rec) / len(rec)) if rec else "-",
            ", ".join(f"{c} {fmt(sum(v) / len(v))}" for c, v in aucs.items()),
            fmt(base), fmt(cv["mean"]["macro_f1"] - base) if base is not None else "-"]


def by_skin_type(r: dict[str, Any], manifest: Path) -> list[str]:
    """Recall per true class and skin type over the ordinary-CV test folds: the manifest's `skin_type` where
    recorded (Fitzpatrick types, PAD-UFES-20 photos only), and for every photo the ITA band of its skin pixels
    (hypoderm.data.shortcut: an estimate of skin tone from the photo, not a Fitzpatrick type)."""
    import csv

    import numpy as np

    from hypoderm.data.shortcut import ita_band, photo_features
    from hypoderm.imaging.io import load_rgb

    with open(manifest, encoding="utf-8") as f:
        meta = {row["path"]: row for row in csv.DictReader(f)}
    rows: list[tuple[str, str, str, bool]] = []  # (true class, skin type, ITA band, correct)
    for fold in sorted((HERE / r["kind"] / r["name"] / "cv").glob("fold*/test_predictions.npz")):
        z = np.load(fold)
        names = [str(c) for c in z["class_names"]]
        for path, y, p in zip(z["paths"], z["y_true"], z["probs"], strict=True):
            ita = photo_features(load_rgb(manifest.parent / str(path)))["ita"]
            rows.append((names[int(y)], meta[str(path)].get("skin_type") or "not recorded", ita_band(ita),
                         int(np.argmax(p)) == int(y)))
    out = []
    for title, key in (("skin type (manifest)", 1), ("estimated skin tone (ITA band)", 2)):
        out += ["", f"### Recall by {title}, ordinary CV test folds ({r['kind']}/{r['name']})", "",
                "| class | group | n | recall |", "|---|---|---|---|"]
        groups = sorted({(row[0], row[key]) for row in rows})
        for cls, g in groups:
            hits = [row[3] for row in rows if row[0] == cls and row[key] == g]
            out.append(f"| {cls} | {g} | {len(hits)} | {pct(sum(hits) / len(hits))} |")
    return out


def main() -> int:
    runs = []
    for kind in ("screen", "runs"):
        files = summarize.read(HERE / kind)
        runs += [load(kind, name, files) for name in sorted({rel.split("/")[0] for rel in files})]
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
    manifest = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    if manifest is not None:
        for r in runs:
            if r["kind"] == "runs" and "cv" in r:
                lines += by_skin_type(r, manifest)
    print("\n".join(lines))
    with open(HERE / "results.json", "w") as f:
        json.dump({r["kind"] + "/" + r["name"]: {k: v for k, v in r.items() if k in ("holdout", "cv")} for r in runs},
                  f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
