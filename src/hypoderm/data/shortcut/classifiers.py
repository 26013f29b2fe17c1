"""The photo-style classifiers (logistic regression, random forest) on the trivial features: fitting, scoring, and
how much each feature counts."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hypoderm.data.shortcut.features import FEATURE_NAMES, feature_matrix
from hypoderm.errors import HypodermError
from hypoderm.metrics import binary_auc, macro_f1, roc_auc_ovr

MODEL_KINDS: tuple[str, ...] = ("logreg", "forest")
MODEL_TITLES = {"logreg": "logistic regression", "forest": "random forest"}


class ShortcutError(HypodermError, ValueError):
    """The baseline cannot be computed (too few images, classes missing from the training folds, ...)."""


# --- classifiers ------------------------------------------------------------------------------

def _make_model(kind: str, seed: int) -> Any:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    impute = SimpleImputer(strategy="median", keep_empty_features=True)
    if kind == "logreg":
        return make_pipeline(impute, StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced",
                                                                           max_iter=5000))
    if kind == "forest":
        return make_pipeline(impute, RandomForestClassifier(n_estimators=100, min_samples_leaf=2,
                                                            class_weight="balanced", random_state=seed, n_jobs=1))
    raise ValueError(f"unknown baseline kind {kind!r}; valid: {', '.join(MODEL_KINDS)}")


def _proba(model: Any, x: np.ndarray, num_classes: int) -> np.ndarray:
    """Class probabilities with one column per class id 0..num_classes-1 (0 for classes the model never saw)."""
    p = model.predict_proba(x)
    out = np.zeros((len(x), num_classes))
    out[:, model.classes_.astype(int)] = p
    return out


def roc_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Binary: AUC of class 1's probability. Multi-class: macro one-vs-rest over the classes present
    with both positives and negatives (hypoderm.metrics.roc_auc_ovr). NaN if undefined."""
    if probs.shape[1] == 2:
        return binary_auc(y_true == 1, probs[:, 1])
    return roc_auc_ovr(y_true, probs, probs.shape[1])[0]


@dataclass
class FittedBaseline:
    """A baseline classifier fitted on feature dicts; `names` are the columns it uses."""

    kind: str
    names: tuple[str, ...]
    num_classes: int
    model: Any


def fit_baseline(features: Sequence[Mapping[str, float]], labels: Sequence[int] | np.ndarray, *, kind: str = "logreg",
                 names: Sequence[str] | None = None, num_classes: int | None = None, seed: int = 0) -> FittedBaseline:
    """Fit one baseline (`kind` in MODEL_KINDS) on feature dicts (from `photo_features`) and label ids.

    `names` defaults to every FEATURE_NAMES column that is not NaN in all rows; pass PIXEL_FEATURES
    (or fewer) to fit a model that can later score in-memory crops on equal terms."""
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(features):
        raise ValueError(f"{len(features)} feature rows but {len(y)} labels")
    if names is None:
        x_all = feature_matrix(features)
        names = [n for j, n in enumerate(FEATURE_NAMES) if np.isfinite(x_all[:, j]).any()]
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        raise ValueError(f"unknown feature names {unknown}; valid: {', '.join(FEATURE_NAMES)}")
    if len(np.unique(y)) < 2:
        raise ShortcutError(f"a baseline needs at least 2 classes in its training data, got {np.unique(y).tolist()}")
    model = _make_model(kind, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. "skipping features without observed values"
        model.fit(feature_matrix(features, names), y)
    k = int(num_classes if num_classes is not None else y.max() + 1)
    return FittedBaseline(kind=kind, names=tuple(names), num_classes=k, model=model)


def predict_baseline(fitted: FittedBaseline, features: Sequence[Mapping[str, float]]) -> np.ndarray:
    """N x num_classes probabilities."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _proba(fitted.model, feature_matrix(features, fitted.names), fitted.num_classes)


def score_baseline(fitted: FittedBaseline, features: Sequence[Mapping[str, float]],
                   labels: Sequence[int]) -> dict[str, float]:
    """Macro-F1, ROC-AUC (binary: class 1; multi-class: macro one-vs-rest), accuracy and n of a fitted
    baseline on other images, e.g. close-up crops (`photo_features` of each crop)."""
    y = np.asarray(labels, dtype=np.int64)
    if len(y) != len(features):
        raise ValueError(f"{len(features)} feature rows but {len(y)} labels")
    if len(y) == 0:
        raise ValueError("no images to score")
    probs = predict_baseline(fitted, features)
    pred = probs.argmax(axis=1)
    return {"macro_f1": macro_f1(y, pred, fitted.num_classes), "roc_auc": roc_auc(y, probs),
            "accuracy": float(np.mean(pred == y)), "n": float(len(y))}


def separability(values: np.ndarray, y: np.ndarray, num_classes: int) -> float:
    """How well one feature alone separates the classes: ROC-AUC of the raw value, folded so that 0.5 is
    chance and 1.0 perfect (max(AUC, 1 - AUC)); multi-class: the mean over one-vs-rest. NaN values are
    left out. Unlike permutation importance it does not vanish when correlated features stand in
    for each other (width / height, the three border channels)."""
    ok = np.isfinite(values)
    v, t = values[ok], y[ok]
    per = []
    for c in ([1] if num_classes == 2 else range(num_classes)):
        auc = binary_auc(t == c, v)
        if math.isfinite(auc):
            per.append(max(auc, 1.0 - auc))
    return float(np.mean(per)) if per else float("nan")


def _permutation_importance(fitted: FittedBaseline, x: np.ndarray, y: np.ndarray, rng: np.random.Generator,
                            n_repeats: int) -> np.ndarray:
    """Drop in ROC-AUC per column of x (NaN when AUC is undefined on this fold)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        base = roc_auc(y, _proba(fitted.model, x, fitted.num_classes))
        drops = np.full(x.shape[1], np.nan)
        if not math.isfinite(base):
            return drops
        n = len(x)
        for j in range(x.shape[1]):
            # all repeats in one predict call: a forest's cost is mostly per call, not per row
            xp = np.tile(x, (n_repeats, 1))
            xp[:, j] = np.concatenate([rng.permutation(x[:, j]) for _ in range(n_repeats)])
            p = _proba(fitted.model, xp, fitted.num_classes)
            drops[j] = float(np.mean([base - roc_auc(y, p[r * n:(r + 1) * n]) for r in range(n_repeats)]))
    return drops
