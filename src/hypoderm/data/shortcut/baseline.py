"""The cross-validated photo-style baseline of one dataset and split (`shortcut_baseline`), and how well the same
features predict a manifest column such as the origin (`column_predictability`)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hypoderm.data.dataset import DatasetIndex
from hypoderm.data.shortcut.classifiers import (
    MODEL_KINDS,
    MODEL_TITLES,
    ShortcutError,
    _permutation_importance,
    _proba,
    fit_baseline,
    roc_auc,
    separability,
)
from hypoderm.data.shortcut.features import FEATURE_NAMES, feature_matrix, file_features
from hypoderm.data.shortcut.report import ModelScore, ShortcutReport
from hypoderm.data.splits import Split
from hypoderm.imaging.io import ImageLoadError
from hypoderm.metrics import macro_f1
from hypoderm.text import fmt


@dataclass
class _Rows:
    """The images of a split the baseline can use: one feature row, label, fold and split position each."""

    paths: list[str] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    folds: list[int] = field(default_factory=list)
    split_pos: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _collect_rows(index: DatasetIndex, split: Split, features: Mapping[str, Mapping[str, float]] | None) -> _Rows:
    by_path = {index.relpath(s): s for s in index.samples}
    class_ids = {c: i for i, c in enumerate(split.class_names)}
    out = _Rows()
    for pos, ss in enumerate(split.samples):
        sample = by_path.get(ss.path)
        if sample is None or sample.label != ss.label:
            continue
        try:
            feats = dict(features[ss.path]) if features and ss.path in features else file_features(sample.path)
        except ImageLoadError as e:
            out.skipped.append((ss.path, str(e)))
            continue
        out.paths.append(ss.path)
        out.rows.append(feats)
        out.labels.append(class_ids[ss.label])
        out.folds.append(ss.fold)
        out.split_pos.append(pos)
    return out


def _feature_names(rows: list[dict[str, float]], names: Sequence[str] | None) -> list[str]:
    """The requested features (default all) that are known (finite) for at least one image."""
    unknown = [n for n in names or () if n not in FEATURE_NAMES]
    if unknown:
        raise ValueError(f"unknown feature names {unknown}; valid: {', '.join(FEATURE_NAMES)}")
    known = [n for j, n in enumerate(FEATURE_NAMES) if np.isfinite(feature_matrix(rows)[:, j]).any()]
    x_names = [n for n in known if names is None or n in names]
    if not x_names:
        raise ShortcutError("none of the requested features is known for any image")
    return x_names


def _score_model(kind: str, split: Split, data: _Rows, x: np.ndarray, y: np.ndarray, x_names: list[str], *,
                 seed: int, rng: np.random.Generator, n_repeats: int) -> tuple[ModelScore, np.ndarray]:
    """One classifier kind over the folds (`x`, `y`: the feature matrix and labels of `data`): its score
    and its out-of-fold probabilities."""
    num_classes = len(split.class_names)
    pos_of = {p: i for i, p in enumerate(data.split_pos)}
    probs = np.full((len(y), num_classes), np.nan)
    fold_f1: dict[int, float] = {}
    fold_auc: dict[int, float] = {}
    perm: list[np.ndarray] = []
    coefs: list[np.ndarray] = []
    for f in range(split.folds):
        train, val, test = split.partition(f)
        tr = np.array([pos_of[p] for p in train + val if p in pos_of], dtype=np.int64)
        te = np.array([pos_of[p] for p in test if p in pos_of], dtype=np.int64)
        if len(te) == 0 or len(np.unique(y[tr])) < 2:
            continue  # a fold without test images or with one training class: nothing to measure
        fitted = fit_baseline([data.rows[i] for i in tr], y[tr], kind=kind, names=x_names,
                              num_classes=num_classes, seed=seed)
        p = _proba(fitted.model, x[te], num_classes)
        probs[te] = p
        fold_f1[f] = macro_f1(y[te], p.argmax(axis=1), num_classes)
        fold_auc[f] = roc_auc(y[te], p)
        perm.append(_permutation_importance(fitted, x[te], y[te], rng, n_repeats))
        if kind == "logreg":
            coefs.append(np.abs(fitted.model[-1].coef_).mean(axis=0))
    if not fold_f1:
        raise ShortcutError("no fold could be scored (each needs test images and 2 classes to train on)")
    done = np.isfinite(probs).all(axis=1)
    pred = probs[done].argmax(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (AUC undefined on every fold)
        perm_mean = np.nanmean(np.array(perm), axis=0)
    score = ModelScore(
        kind=kind, fold_macro_f1=fold_f1, fold_auc=fold_auc,
        pooled_macro_f1=macro_f1(y[done], pred, num_classes), pooled_auc=roc_auc(y[done], probs[done]),
        pooled_accuracy=float(np.mean(pred == y[done])),
        permutation_importance={n: float(v) for n, v in zip(x_names, perm_mean, strict=True)},
        coef_importance=({n: float(v) for n, v in zip(x_names, np.mean(coefs, axis=0), strict=True)}
                         if coefs else {}))
    return score, probs


def shortcut_baseline(index: DatasetIndex, split: Split, *, seed: int = 0, n_repeats: int = 5,
                      features: Mapping[str, Mapping[str, float]] | None = None,
                      names: Sequence[str] | None = None) -> ShortcutReport:
    """Cross-validate the photo-style baselines on `split`'s folds.

    Uses the images that are both in `index` and in `split` (matched by relative path) and readable;
    fold f trains on `split.partition(f)`'s train and validation folds and is scored on its test fold.
    `features` ({relative path: photo_features}) skips the decoding for images already measured;
    `names` restricts the classifiers to those features (default: every one known for some image).
    Raises `ShortcutError` when fewer than 2 classes or too few images remain."""
    num_classes = len(split.class_names)
    data = _collect_rows(index, split, features)
    y = np.array(data.labels, dtype=np.int64)
    present = np.bincount(y, minlength=num_classes) if len(y) else np.zeros(num_classes, dtype=int)
    if (present > 0).sum() < 2 or len(y) < 2 * split.folds:
        raise ShortcutError(f"too few readable images for a baseline ({len(y)} images; per class "
                            f"{dict(zip(split.class_names, present.tolist(), strict=True))})")
    x_names = _feature_names(data.rows, names)
    x = feature_matrix(data.rows, x_names)
    rng = np.random.default_rng(seed)
    scores: dict[str, ModelScore] = {}
    oof: dict[str, np.ndarray] = {}
    for kind in MODEL_KINDS:  # one rng across the kinds, in this order: the audit's numbers are reproducible
        scores[kind], oof[kind] = _score_model(kind, split, data, x, y, x_names, seed=seed, rng=rng,
                                               n_repeats=n_repeats)
    univariate = {n: separability(x[:, j], y, num_classes) for j, n in enumerate(x_names)}
    return ShortcutReport(class_names=list(split.class_names), folds=split.folds, paths=data.paths, labels=y,
                          fold_of=np.array(data.folds, dtype=np.int64), features=data.rows, models=scores,
                          univariate=univariate, oof_probs=oof, skipped=data.skipped)


# --- held-out values (e.g. origins) ------------------------------------------------------------

def column_predictability(index: DatasetIndex, column: str, report: ShortcutReport, *, folds: int = 5,
                          seed: int = 0) -> dict[str, Any]:
    """How well the trivial photo features predict a manifest column (e.g. `origin`) instead of the label:
    the same classifiers, group-aware stratified `folds`-fold CV with the column's values as classes.
    High numbers mean the sources differ in photo style, so a model can learn the source (and, where a
    class has a single source, the class from the source alone). Features come from `report`."""
    from dataclasses import replace as dc_replace

    from hypoderm.data.splits import column_value, make_split

    features = dict(zip(report.paths, report.features, strict=True))
    samples = [dc_replace(s, label=column_value(s, column)) for s in index.samples if index.relpath(s) in features]
    values = sorted({s.label for s in samples})
    if len(values) < 2:
        raise ShortcutError(f"the column {column!r} has fewer than 2 values")
    pseudo = DatasetIndex(root=index.root, samples=samples, class_names=values, group_source=index.group_source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "fewer groups than folds" for a small source
        split = make_split(pseudo, folds=folds, seed=seed)
    rep = shortcut_baseline(pseudo, split, seed=seed, features=features)
    best = rep.models[rep.best]
    done = np.isfinite(rep.oof_probs[rep.best]).all(axis=1)
    pred = rep.oof_probs[rep.best][done].argmax(axis=1)
    per_value = {v: float(np.mean(pred[rep.labels[done] == i] == i)) for i, v in enumerate(values)
                 if (rep.labels[done] == i).any()}
    return {"column": column, "values": values, "model": rep.best, "model_title": MODEL_TITLES[rep.best],
            "macro_f1_mean": best.macro_f1_mean, "macro_f1_std": best.macro_f1_std,
            "roc_auc_pooled": best.pooled_auc, "recall_per_value": per_value, "chance_macro_f1": 1.0 / len(values),
            "folds": folds, "top_features": dict(rep.top_features(5))}


def predictability_line(p: Mapping[str, Any]) -> str:
    """One sentence for a report."""
    recalls = ", ".join(f"{v} {r:.0%}" for v, r in p["recall_per_value"].items())
    return (f"Photo style predicts the {p['column']}: a {p['model_title']} on the trivial features tells the "
            f"{len(p['values'])} values apart at macro-F1 {fmt(p['macro_f1_mean'])} ± {fmt(p['macro_f1_std'])} "
            f"(chance about {p['chance_macro_f1']:.2f}; ROC-AUC {fmt(p['roc_auc_pooled'])}; {p['folds']}-fold "
            f"group-aware CV; recall per value: {recalls}). "
            + ("Source cues exist that a model can learn." if p["macro_f1_mean"] > 0.5 + p["chance_macro_f1"] / 2
               else "Few source cues at this level."))
