"""What a held-out fold can measure: the photos of one source (e.g. one `origin`) that the model never saw.

A held-out value often holds one class only (the 566 abdomen photos are all healthy skin), so the
usual fold metrics (macro-F1 over every class) mean little there. This module reports what can be
measured instead, for the model and for the photo-style baseline alike:

- per true class present: n, recall, and what its photos are called (share of each predicted class),
  with and without the abstain threshold ("called X with status ok": top probability >= threshold);
- ROC-AUC (one-vs-rest, macro over the classes) where two or more classes are present *and* were
  trained on;
- which classes cannot be tested: present in the held-out value but absent from the fold's training
  data, because that value is their only source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hypoderm.metrics import roc_auc_ovr
from hypoderm.text import pct


def holdout_report(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                   trained: Sequence[str], threshold: float | None = None) -> dict[str, Any]:
    """The measurable numbers of one held-out value (see the module docstring).

    `probs` are the calibrated probabilities, `trained` the classes the fold's model had training photos
    of, `threshold` the abstain threshold (None: no "status ok" columns, e.g. for a baseline)."""
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(y), len(class_names)):
        raise ValueError(f"probs must have shape ({len(y)}, {len(class_names)}), got {probs.shape}")
    pred = probs.argmax(axis=1)
    ok = probs.max(axis=1) >= threshold if threshold is not None else None
    per_class: dict[str, Any] = {}
    for c, name in enumerate(class_names):
        mask = y == c
        n = int(mask.sum())
        if n == 0:
            continue
        called = {other: float(np.mean(pred[mask] == k)) for k, other in enumerate(class_names)}
        row: dict[str, Any] = {"n": n, "testable": name in trained, "recall": called[name], "called": called}
        if ok is not None:
            row["answered"] = float(np.mean(ok[mask]))
            row["called_ok"] = {other: float(np.mean((pred[mask] == k) & ok[mask]))
                                for k, other in enumerate(class_names)}
        per_class[name] = row
    present = [c for c, name in enumerate(class_names) if name in per_class]
    testable = [c for c in present if class_names[c] in trained]
    auc: float | None = None
    auc_note = None
    if len(testable) >= 2:
        keep = np.isin(y, testable)
        auc, _ = roc_auc_ovr(y[keep], probs[keep], len(class_names))
    elif len(present) >= 2:
        auc_note = "two classes present, but fewer than two were trained on"
    return {"n": int(len(y)), "per_class": per_class, "roc_auc": auc, "roc_auc_note": auc_note,
            "untestable": [class_names[c] for c in present if c not in testable]}


def balanced_recall(reports: Mapping[str, Mapping[str, Any]]) -> float:
    """Mean recall over the testable (held-out value, class) rows: one number per model, where each source
    counts once whatever its size (NaN without a testable row)."""
    rows = [r["recall"] for rep in reports.values() for r in rep["per_class"].values() if r["testable"]]
    return float(np.mean(rows)) if rows else float("nan")


def single_source_classes(values_by_class: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """{class: its only value} for every class whose photos all share one value of the held-out column."""
    out = {}
    for name, values in values_by_class.items():
        distinct = sorted(set(values))
        if len(distinct) == 1:
            out[name] = distinct[0]
    return out


def _called(row: Mapping[str, Any], key: str, true: str) -> str:
    """'normal_skin 91%, vitiligo 6%' (the other classes a true class is mistaken for, largest first)."""
    parts = sorted(((v, k) for k, v in row[key].items() if k != true and v > 0), reverse=True)
    return ", ".join(f"{k} {pct(v)}" for v, k in parts) or "-"


def render_holdout_table(reports: Mapping[str, Mapping[str, Any]], baseline: Mapping[str, Mapping[str, Any]]
                         | None = None) -> list[str]:
    """Markdown rows: one per (held-out value, true class), for the model and (when given) the baseline."""
    has_ok = any("answered" in r for rep in reports.values() for r in rep["per_class"].values())
    head = "| held out | true class | n | recall | mistaken for | "
    head += "answered (status ok) | called with status ok | " if has_ok else ""
    head += "ROC-AUC |"
    if baseline:
        head += " style baseline: recall | baseline ROC-AUC |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for value, rep in reports.items():
        for true, row in rep["per_class"].items():
            cells = [value, true, str(row["n"])]
            if row["testable"]:
                cells += [pct(row["recall"]), _called(row, "called", true)]
            else:
                cells += ["untestable", "its only source: " + _called(row, "called", "")]
            if has_ok:
                cells += [pct(row.get("answered")),
                          ", ".join(f"{k} {pct(v)}" for k, v in row.get("called_ok", {}).items() if v > 0) or "-"]
            cells.append("-" if rep["roc_auc"] is None else f"{rep['roc_auc']:.3f}")
            if baseline:
                b = (baseline.get(value) or {}).get("per_class", {}).get(true)
                b_auc = (baseline.get(value) or {}).get("roc_auc")
                cells += [pct(b["recall"]) if b and b["testable"] else "-",
                          "-" if b_auc is None else f"{b_auc:.3f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines
