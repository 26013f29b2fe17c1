"""Shortcut audit: how well do *trivial* photo features predict the label?

If a logistic regression on image size, skin colour, border colour and file size separates the
classes about as well as the CNN, the CNN's score says little about lesions: it may have learned
photo style (where and how the pictures were taken) instead. On the development photos it does:
see benchmarks/data_audit/README.md. This module measures that baseline with the same group-aware
folds as `hypoderm cv`, so the two numbers can be put side by side.

Torch-free (numpy, Pillow, scikit-learn). Feature extraction costs a few milliseconds per photo.

Features (`FEATURE_NAMES`, one float each; NaN where undefined):
- geometry: `width`, `height`, `aspect` (width / height) of the upright image;
- skin (Chai & Ngan YCrCb rule, `hypoderm.imaging.colour.skin_mask`): `skin_fraction`, mean and std of the
  skin pixels' R, G, B, and `ita`, the individual typology angle of the skin,
  ITA = atan((L* - 50) / b*) in degrees, from the mean CIELAB L* and b* of the skin pixels
  (sRGB, D65); higher is lighter skin;
- background: mean R, G, B of a 5 px border, its std (mean of the three channels' std), and the
  share of skin pixels in it (a close-up shows skin up to the edge, a portrait shows a backdrop);
- style: `sharpness` (mean absolute difference of neighbouring luma values) and `colourfulness`
  (Hasler & Suesstrunk, 2003): compression, resizing and studio lighting move both;
- file (NaN for an in-memory crop): `file_bytes_per_pixel` (encoded size / pixels: compression
  level and source) and `exif` (1 if the file carries EXIF metadata, else 0).

No face detector (the installed OpenCV build ships no cascade files, and a model download is not
acceptable here) and no text/watermark detector: no cheap, well-founded proxy was found.

The classifiers: a standardised logistic regression and a random forest, both class-balanced,
trained on the training and validation folds of each split fold and scored on its test fold.
Missing values are imputed with the training median.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hypoderm.data.dataset import DatasetIndex
from hypoderm.data.splits import Split
from hypoderm.imaging.colour import ita_degrees, rgb_to_lab, skin_mask
from hypoderm.imaging.io import ImageLoadError, load_rgb_bytes

GEOMETRY_FEATURES: tuple[str, ...] = ("width", "height", "aspect")
SKIN_FEATURES: tuple[str, ...] = ("skin_fraction", "skin_r_mean", "skin_g_mean", "skin_b_mean",
                                  "skin_r_std", "skin_g_std", "skin_b_std", "ita")
BORDER_FEATURES: tuple[str, ...] = ("border_r", "border_g", "border_b", "border_std", "border_skin_fraction")
STYLE_FEATURES: tuple[str, ...] = ("sharpness", "colourfulness")
FILE_FEATURES: tuple[str, ...] = ("file_bytes_per_pixel", "exif")
FEATURE_NAMES: tuple[str, ...] = GEOMETRY_FEATURES + SKIN_FEATURES + BORDER_FEATURES + STYLE_FEATURES + FILE_FEATURES
# Features that an in-memory image (e.g. a crop) has without its file.
PIXEL_FEATURES: tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n not in FILE_FEATURES)

BORDER_PX = 5
# Pixel statistics are taken on the image shrunk to at most this longer side: a 12-megapixel
# phone photo costs no more than a thumbnail (geometry and file features use the full size).
ANALYSIS_MAX_SIDE = 512

# The standard ITA skin-tone categories (Chardon et al., 1991; Del Bino & Bernerd, 2013), in degrees.
# (name, lower bound exclusive, upper bound inclusive)
ITA_BANDS: tuple[tuple[str, float, float], ...] = (
    ("very light (>55)", 55.0, math.inf), ("light (41-55)", 41.0, 55.0), ("intermediate (28-41)", 28.0, 41.0),
    ("tan (10-28)", 10.0, 28.0), ("brown (-30-10)", -30.0, 10.0), ("dark (<-30)", -math.inf, -30.0))
NO_SKIN_BAND = "no skin pixels"

WARN_ABOVE = 0.70   # a trivial baseline above this macro-F1 is a shortcut risk whatever the CNN does
WARN_MARGIN = 0.10  # ... and so is one within this much of the CNN's macro-F1
MODEL_KINDS: tuple[str, ...] = ("logreg", "forest")
MODEL_TITLES = {"logreg": "logistic regression", "forest": "random forest"}


class ShortcutError(ValueError):
    """The baseline cannot be computed (too few images, classes missing from the training folds, ...)."""


# --- features ---------------------------------------------------------------------------------

def ita_band(ita: float) -> str:
    """The ITA_BANDS name for an angle; NO_SKIN_BAND for NaN."""
    if not math.isfinite(ita):
        return NO_SKIN_BAND
    for name, lo, hi in ITA_BANDS:
        if lo < ita <= hi:
            return name
    return ITA_BANDS[-1][0]  # -inf itself


def photo_features(img: Image.Image, file_bytes: int | None = None, exif: bool | None = None) -> dict[str, float]:
    """The trivial features of one upright RGB image, in FEATURE_NAMES order.

    `file_bytes` (encoded file size) and `exif` describe the file the image came from; without
    them (an in-memory crop) the file features are NaN. Skin statistics are NaN when no pixel
    passes the skin rule."""
    if img.mode != "RGB":
        img = img.convert("RGB")
    width, height = img.size
    if width < 1 or height < 1:
        raise ValueError(f"empty image ({width}x{height})")
    if max(width, height) > ANALYSIS_MAX_SIDE:
        small = img.copy()
        small.thumbnail((ANALYSIS_MAX_SIDE, ANALYSIS_MAX_SIDE), Image.Resampling.BILINEAR)
        img = small
    rgb = np.asarray(img, dtype=np.uint8)
    out: dict[str, float] = {"width": float(width), "height": float(height), "aspect": width / height}

    mask = skin_mask(rgb)
    skin = rgb[mask]
    out["skin_fraction"] = float(mask.mean())
    if len(skin):
        mean, std = skin.mean(axis=0), skin.std(axis=0)
        lab = rgb_to_lab(skin)
        ita = ita_degrees(float(lab[:, 0].mean()), float(lab[:, 2].mean()))
    else:
        mean = std = np.full(3, np.nan)
        ita = float("nan")
    for i, c in enumerate("rgb"):
        out[f"skin_{c}_mean"] = float(mean[i])
    for i, c in enumerate("rgb"):
        out[f"skin_{c}_std"] = float(std[i])
    out["ita"] = ita

    h, w = rgb.shape[:2]
    edge = np.zeros((h, w), dtype=bool)
    k = min(BORDER_PX, (min(h, w) + 1) // 2)
    edge[:k, :] = edge[-k:, :] = edge[:, :k] = edge[:, -k:] = True
    border = rgb[edge].astype(np.float64)
    for i, c in enumerate("rgb"):
        out[f"border_{c}"] = float(border[:, i].mean())
    out["border_std"] = float(border.std(axis=0).mean())
    out["border_skin_fraction"] = float(mask[edge].mean())

    f = rgb.astype(np.float64)
    luma = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    diffs = [np.abs(np.diff(luma, axis=a)).ravel() for a in (0, 1) if luma.shape[a] > 1]
    out["sharpness"] = float(np.concatenate(diffs).mean()) if diffs else 0.0
    rg = f[..., 0] - f[..., 1]
    yb = 0.5 * (f[..., 0] + f[..., 1]) - f[..., 2]
    out["colourfulness"] = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))

    out["file_bytes_per_pixel"] = float("nan") if file_bytes is None else file_bytes / (width * height)
    out["exif"] = float("nan") if exif is None else float(bool(exif))
    return out


def has_exif(data: bytes) -> bool:
    """True when the encoded image carries a non-empty EXIF block (Pillow reads only the header)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return len(im.getexif()) > 0
    except Exception:  # noqa: BLE001 - a malformed EXIF block means "no usable EXIF", not a failure
        return False


def file_features(path: str | Path) -> dict[str, float]:
    """`photo_features` of an image file, with its file features. Raises `ImageLoadError`."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ImageLoadError(f"cannot read file ({e.strerror or e})", "unreadable") from e
    img = load_rgb_bytes(data)
    return photo_features(img, file_bytes=len(data), exif=has_exif(data))


def feature_matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str] = FEATURE_NAMES) -> np.ndarray:
    """N x len(names) float64 matrix; a name missing from a row is NaN."""
    return np.array([[float(r.get(n, np.nan)) for n in names] for r in rows], dtype=np.float64).reshape(
        len(rows), len(names))


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


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, labels=list(range(num_classes)), average="macro", zero_division=0))


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC by the Mann-Whitney rank sum (ties count one half), equal to scikit-learn's
    `roc_auc_score` but without its input checks, which cost more than the sum itself when the
    permutation importance calls it a thousand times. NaN without both positives and negatives."""
    from scipy.stats import rankdata

    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Binary: AUC of class 1's probability. Multi-class: macro one-vs-rest over the classes present
    with both positives and negatives (as `hypoderm.engine.metrics.roc_auc_ovr`). NaN if undefined."""
    per = []
    classes = [1] if probs.shape[1] == 2 else range(probs.shape[1])
    for c in classes:
        auc = binary_auc(y_true == c, probs[:, c])
        if math.isfinite(auc):
            per.append(auc)
    return float(np.mean(per)) if per else float("nan")


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


# --- the cross-validated baseline -------------------------------------------------------------

@dataclass
class ModelScore:
    """One baseline classifier over the folds. Fold keys are the split's fold numbers."""

    kind: str
    fold_macro_f1: dict[int, float]
    fold_auc: dict[int, float]
    pooled_macro_f1: float
    pooled_auc: float
    pooled_accuracy: float
    # mean drop in test-fold ROC-AUC when the feature's column is shuffled (over folds and repeats)
    permutation_importance: dict[str, float]
    # mean |coefficient| of the standardised logistic regression (logreg only), over classes and folds
    coef_importance: dict[str, float] = field(default_factory=dict)

    @property
    def macro_f1_mean(self) -> float:
        vals = [v for v in self.fold_macro_f1.values() if math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    @property
    def macro_f1_std(self) -> float:
        vals = [v for v in self.fold_macro_f1.values() if math.isfinite(v)]
        return float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")


def _fmt(v: float, spec: str = ".3f") -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


@dataclass
class ShortcutReport:
    """The photo-style baseline of one dataset and split.

    `best` is the classifier with the higher mean test-fold macro-F1; its numbers are "the baseline"
    (mean over folds, like `hypoderm cv` reports the CNN)."""

    class_names: list[str]
    folds: int
    paths: list[str]
    labels: np.ndarray
    fold_of: np.ndarray
    features: list[dict[str, float]]
    models: dict[str, ModelScore]
    # {feature: separability on all images}, see `separability`
    univariate: dict[str, float]
    oof_probs: dict[str, np.ndarray]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def best(self) -> str:
        return max(self.models, key=lambda k: (np.nan_to_num(self.models[k].macro_f1_mean, nan=-1.0),
                                               -MODEL_KINDS.index(k)))

    @property
    def macro_f1(self) -> float:
        return self.models[self.best].macro_f1_mean

    @property
    def auc(self) -> float:
        return self.models[self.best].pooled_auc

    def fold_macro_f1(self) -> dict[int, float]:
        """The baseline's macro-F1 on each test fold (for per-fold margins)."""
        return dict(self.models[self.best].fold_macro_f1)

    def ita_table(self) -> dict[str, dict[str, int]]:
        """{ITA band: {class: images}}, every band and class listed (bands with no image too)."""
        names = [name for name, _, _ in ITA_BANDS] + [NO_SKIN_BAND]
        table = {name: {c: 0 for c in self.class_names} for name in names}
        for feats, y in zip(self.features, self.labels.tolist(), strict=True):
            band = ita_band(feats.get("ita", float("nan")))
            table[band][self.class_names[y]] += 1
        return table

    def top_features(self, n: int = 5) -> list[tuple[str, float]]:
        """The n features that alone separate the classes best, with their separability (0.5 = chance)."""
        return sorted(self.univariate.items(), key=lambda kv: -np.nan_to_num(kv[1], nan=-np.inf))[:n]

    def warn(self, cnn_macro_f1: float | None = None) -> str | None:
        """The loud warning, or None: when the baseline's macro-F1 is above WARN_ABOVE, or within
        WARN_MARGIN of (or above) the CNN's macro-F1."""
        base = self.macro_f1
        if not math.isfinite(base):
            return None
        reasons = []
        if base > WARN_ABOVE:
            reasons.append(f"above {WARN_ABOVE:.2f}")
        if cnn_macro_f1 is not None and math.isfinite(cnn_macro_f1) and base >= cnn_macro_f1 - WARN_MARGIN:
            where = "at or above" if base >= cnn_macro_f1 else f"within {WARN_MARGIN:.2f} of"
            reasons.append(f"{where} the CNN's {cnn_macro_f1:.3f} (CNN margin {cnn_macro_f1 - base:+.3f})")
        if not reasons:
            return None
        top = ", ".join(n for n, _ in self.top_features(3))
        return (f"!!! SHORTCUT WARNING: photo style alone predicts the label. A {MODEL_TITLES[self.best]} on "
                f"{len(self.univariate)} trivial photo features (size, skin and "
                f"border colour, file size; no lesion) reaches macro-F1 {base:.3f} (AUC {_fmt(self.auc)}) on the "
                f"same folds: {' and '.join(reasons)}. Most telling: {top}. A CNN can score this well "
                "without looking at the lesion; do not trust its accuracy until it is tested on photos from "
                "other sources. !!!")

    def summary(self, cnn_macro_f1: float | None = None) -> str:
        lines = [f"photo-style shortcut baseline ({len(self.labels)} images, {self.folds} folds, "
                 f"{len(self.univariate)} trivial features):"]
        for kind, m in self.models.items():
            lines.append(f"  {MODEL_TITLES[kind]:<20} macro-F1 {_fmt(m.macro_f1_mean)} ± {_fmt(m.macro_f1_std)} "
                         f"(pooled {_fmt(m.pooled_macro_f1)}), ROC-AUC {_fmt(m.pooled_auc)}"
                         + ("  <- baseline" if kind == self.best else ""))
        lines.append("  top features (ROC-AUC of the feature alone, 0.5 = chance): "
                     + ", ".join(f"{n} {v:.3f}" for n, v in self.top_features(5)))
        lines.append("  images per skin-tone band (ITA of the skin pixels):")
        head = f"    {'band':<22}" + "".join(f"{c[:14]:>15}" for c in self.class_names)
        lines.append(head)
        for band, counts in self.ita_table().items():
            lines.append(f"    {band:<22}" + "".join(f"{counts[c]:>15}" for c in self.class_names))
        if self.skipped:
            lines.append(f"  skipped {len(self.skipped)} unreadable image(s)")
        warning = self.warn(cnn_macro_f1)
        if warning:
            lines += ["", warning]
        return "\n".join(lines)

    def to_markdown(self, cnn_macro_f1: float | None = None) -> str:
        best = self.models[self.best]
        md = ["## Shortcut audit: photo style alone", "",
              f"Classifiers trained on {len(self.univariate)} trivial photo features (no lesion: "
              "size, skin and border colour, skin tone, sharpness, file size; `hypoderm.data.shortcut`) with the "
              f"split's {self.folds} group-aware folds (train + validation folds -> test fold). "
              "macro-F1 is the mean ± std over test folds (as `hypoderm cv` reports the CNN); pooled = all "
              "out-of-fold predictions together. ROC-AUC: pooled, " +
              ("class 1 positive." if len(self.class_names) == 2 else "macro one-vs-rest."), ""]
        warning = self.warn(cnn_macro_f1)
        if warning:
            md += [f"> **{warning}**", ""]
        md += ["| classifier | macro-F1 (mean ± std) | macro-F1 pooled | ROC-AUC pooled | accuracy pooled |",
               "|---|---:|---:|---:|---:|"]
        for kind, m in self.models.items():
            mark = " (baseline)" if kind == self.best else ""
            md.append(f"| {MODEL_TITLES[kind]}{mark} | {_fmt(m.macro_f1_mean)} ± {_fmt(m.macro_f1_std)} | "
                      f"{_fmt(m.pooled_macro_f1)} | {_fmt(m.pooled_auc)} | {_fmt(m.pooled_accuracy)} |")
        md += ["", "Per fold (macro-F1 of the baseline): " + ", ".join(
            f"fold {f} {_fmt(v)}" for f, v in sorted(best.fold_macro_f1.items())), ""]
        md += ["### Feature importance", "",
               "Alone: ROC-AUC of the feature by itself on all images, folded so that 0.5 is chance and 1 is "
               "perfect. Permutation: mean drop in test-fold ROC-AUC when the feature's column is shuffled "
               "(correlated features, e.g. width/height/aspect or the border channels, stand in for each other "
               "and share it). |coef|: mean absolute coefficient of the standardised logistic regression.", "",
               "| feature | alone | permutation, logistic regression | permutation, random forest | \\|coef\\| |",
               "|---|---:|---:|---:|---:|"]
        lr, rf = self.models.get("logreg"), self.models.get("forest")
        for name, alone in self.top_features(len(self.univariate)):
            md.append(f"| {name} | {_fmt(alone)} "
                      f"| {_fmt(lr.permutation_importance.get(name, float('nan')) if lr else float('nan'))} "
                      f"| {_fmt(rf.permutation_importance.get(name, float('nan')) if rf else float('nan'))} "
                      f"| {_fmt(lr.coef_importance.get(name, float('nan')) if lr else float('nan'))} |")
        md += ["", "### Images per skin-tone band", "",
               "ITA = atan((L* - 50) / b*) of the mean CIELAB colour of the skin pixels (YCrCb rule). Photo "
               "lighting moves it; it is a rough proxy of skin tone, not a Fitzpatrick type.", "",
               "| ITA band | " + " | ".join(self.class_names) + " |", "|---" * (len(self.class_names) + 1) + "|"]
        for band, counts in self.ita_table().items():
            md.append(f"| {band} | " + " | ".join(str(counts[c]) for c in self.class_names) + " |")
        if self.skipped:
            md += ["", f"Skipped {len(self.skipped)} unreadable image(s)."]
        return "\n".join(md) + "\n"

    def csv_rows(self) -> list[dict[str, str]]:
        """One row per image: path, label, fold, every feature, the baseline's out-of-fold probabilities."""
        probs = self.oof_probs[self.best]
        rows = []
        for i, path in enumerate(self.paths):
            row = {"path": path, "label": self.class_names[int(self.labels[i])], "fold": str(int(self.fold_of[i])),
                   "ita_band": ita_band(self.features[i].get("ita", float("nan")))}
            row.update({n: f"{self.features[i].get(n, float('nan')):.6g}" for n in FEATURE_NAMES})
            row.update({f"baseline_p_{c}": f"{probs[i, k]:.4f}" for k, c in enumerate(self.class_names)})
            rows.append(row)
        return rows

    def to_dict(self, cnn_fold_macro_f1: Mapping[int, float] | None = None) -> dict[str, Any]:
        """JSON-ready summary; with the CNN's per-fold macro-F1, also the per-fold margins."""
        best = self.models[self.best]
        d: dict[str, Any] = {
            "model": self.best, "model_title": MODEL_TITLES[self.best], "features": len(self.univariate),
            "macro_f1_mean": best.macro_f1_mean, "macro_f1_std": best.macro_f1_std,
            "macro_f1_pooled": best.pooled_macro_f1, "roc_auc_pooled": best.pooled_auc,
            "per_fold_macro_f1": {str(f): v for f, v in sorted(best.fold_macro_f1.items())},
            "models": {k: {"macro_f1_mean": m.macro_f1_mean, "macro_f1_std": m.macro_f1_std,
                           "macro_f1_pooled": m.pooled_macro_f1, "roc_auc_pooled": m.pooled_auc}
                       for k, m in self.models.items()},
            "top_features": dict(self.top_features(5)), "ita_bands": self.ita_table(),
        }
        if cnn_fold_macro_f1:
            d["per_fold_margin"] = {str(f): float(v) - best.fold_macro_f1.get(int(f), float("nan"))
                                    for f, v in sorted(cnn_fold_macro_f1.items(), key=lambda kv: int(kv[0]))}
        return d


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
    for kind in MODEL_KINDS:  # one rng across the kinds, in this order, as before
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
            f"{len(p['values'])} values apart at macro-F1 {_fmt(p['macro_f1_mean'])} ± {_fmt(p['macro_f1_std'])} "
            f"(chance about {p['chance_macro_f1']:.2f}; ROC-AUC {_fmt(p['roc_auc_pooled'])}; {p['folds']}-fold "
            f"group-aware CV; recall per value: {recalls}). "
            + ("Source cues exist that a model can learn." if p["macro_f1_mean"] > 0.5 + p["chance_macro_f1"] / 2
               else "Few source cues at this level."))
