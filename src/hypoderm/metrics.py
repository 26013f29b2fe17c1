"""Classification metrics with named keys (scikit-learn underneath), ECE and bootstrap intervals: the one home of
macro-F1 and ROC-AUC for training, evaluation, the comparison study, the photo-style audit and the INT8 report.
Torch-free (numpy + scikit-learn + SciPy), importing nothing else of hypoderm."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the top-class confidence: sum over equal-width bins of |accuracy - confidence| * share."""
    probs, y_true = np.asarray(probs), np.asarray(y_true)
    if len(y_true) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    # bin i holds conf in (edges[i], edges[i+1]]; conf is > 0 for a softmax, so nothing is dropped
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> dict[str, list[float]]:
    """Per-bin mean confidence, accuracy and count (for the reliability diagram)."""
    conf = np.asarray(probs).max(axis=1)
    correct = (np.asarray(probs).argmax(axis=1) == np.asarray(y_true)).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    out: dict[str, list[float]] = {"confidence": [], "accuracy": [], "count": [], "lower": [], "upper": []}
    for b in range(n_bins):
        m = bins == b
        out["lower"].append(b / n_bins)
        out["upper"].append((b + 1) / n_bins)
        out["count"].append(int(m.sum()))
        out["confidence"].append(float(conf[m].mean()) if m.any() else float("nan"))
        out["accuracy"].append(float(correct[m].mean()) if m.any() else float("nan"))
    return out


def macro_f1(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int) -> float:
    """Macro-F1 over the classes 0..num_classes-1; a class absent from both counts as F1 0 (zero_division=0)."""
    return float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0))


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC by the Mann-Whitney rank sum (ties count one half), equal to scikit-learn's
    `roc_auc_score` but without its input checks, which cost more than the sum itself when the
    photo-style audit's permutation importance calls it a thousand times. NaN without both positives
    and negatives."""
    from scipy.stats import rankdata

    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc_ovr(y_true: np.ndarray, probs: np.ndarray, num_classes: int) -> tuple[float, dict[int, float]]:
    """Macro one-vs-rest ROC-AUC over the classes present with both positives and negatives, and per class."""
    y_true = np.asarray(y_true)
    per: dict[int, float] = {}
    for c in range(num_classes):
        auc = binary_auc(y_true == c, probs[:, c])
        if np.isfinite(auc):
            per[c] = auc
    macro = float(np.mean(list(per.values()))) if per else float("nan")
    return macro, per


def bootstrap_ci(y_true: np.ndarray, y_pred: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                 labels: Sequence[int] | None = None) -> dict[str, list[float]]:
    """Percentile bootstrap 95% intervals for accuracy and macro-F1 (resampling images)."""
    rng = np.random.default_rng(seed)
    n = len(y_true)
    acc, f1 = np.empty(n_resamples), np.empty(n_resamples)
    for i in range(n_resamples):
        idx = rng.integers(0, n, n)
        acc[i] = np.mean(y_true[idx] == y_pred[idx])
        f1[i] = f1_score(y_true[idx], y_pred[idx], average="macro", labels=labels, zero_division=0)
    return {"accuracy": [float(np.percentile(acc, 2.5)), float(np.percentile(acc, 97.5))],
            "macro_f1": [float(np.percentile(f1, 2.5)), float(np.percentile(f1, 97.5))]}


def classification_metrics(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, class_names: Sequence[str], *,
                           probs_uncalibrated: np.ndarray | None = None, n_bootstrap: int = 1000,
                           seed: int = 0) -> dict[str, Any]:
    """All evaluation metrics of one prediction set.

    `probs` are the (temperature-scaled) probabilities used for predictions; `probs_uncalibrated`
    (temperature 1) gives `ece_before`. Scalars are top-level keys; per-class values are nested.
    """
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(y), k):
        raise ValueError(f"probs must have shape ({len(y)}, {k}), got {probs.shape}")
    if len(y) == 0:
        raise ValueError("no samples to evaluate")
    labels = list(range(k))
    pred = probs.argmax(axis=1)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    auc, auc_per = roc_auc_ovr(y, probs, k)
    before = probs if probs_uncalibrated is None else np.asarray(probs_uncalibrated)
    m: dict[str, Any] = {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        # zero_division=0 and explicit labels: a class absent from this set counts as F1 0 in the macro
        "macro_f1": macro_f1(y, pred, k),
        "weighted_f1": float(f1_score(y, pred, average="weighted", labels=labels, zero_division=0)),
        "roc_auc_ovr": auc,
        "ece_before": expected_calibration_error(before, y),
        "ece_after": expected_calibration_error(probs, y),
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i]),
                   "roc_auc": auc_per.get(i, float("nan"))}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "class_names": list(class_names),
    }
    if n_bootstrap > 0:
        m["ci95"] = bootstrap_ci(y, pred, n_bootstrap, seed, labels)
    return m


def group_metrics(y_true: Sequence[int] | np.ndarray, probs: np.ndarray, groups: Sequence[str | None],
                  num_classes: int) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 per group (e.g. Fitzpatrick skin type); None is reported as 'unknown'."""
    y = np.asarray(y_true)
    pred = np.asarray(probs).argmax(axis=1)
    names = np.asarray(["unknown" if g is None or g == "" else str(g) for g in groups])
    out: dict[str, dict[str, float]] = {}
    for g in sorted(set(names.tolist())):
        m = names == g
        out[g] = {"n": int(m.sum()), "accuracy": float(np.mean(y[m] == pred[m])),
                  "macro_f1": float(f1_score(y[m], pred[m], average="macro", labels=sorted(set(y[m].tolist())),
                                             zero_division=0))}
    return out


def scalar_metrics(m: dict[str, Any]) -> dict[str, float]:
    """The top-level numbers of a metrics dict (what cross-validation averages); drops the count `n`."""
    return {k: float(v) for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"}
