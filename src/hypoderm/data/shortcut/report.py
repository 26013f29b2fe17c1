"""The result of the shortcut audit and its three writers (text summary, Markdown, CSV rows; and the JSON dict)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hypoderm.data.shortcut.classifiers import MODEL_KINDS, MODEL_TITLES
from hypoderm.data.shortcut.features import FEATURE_NAMES, ITA_BANDS, NO_SKIN_BAND, ita_band
from hypoderm.text import fmt

WARN_ABOVE = 0.70   # a trivial baseline above this macro-F1 is a shortcut risk whatever the CNN does
WARN_MARGIN = 0.10  # ... and so is one within this much of the CNN's macro-F1


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
                f"border colour, file size; no lesion) reaches macro-F1 {base:.3f} (AUC {fmt(self.auc)}) on the "
                f"same folds: {' and '.join(reasons)}. Most telling: {top}. A CNN can score this well "
                "without looking at the lesion; do not trust its accuracy until it is tested on photos from "
                "other sources. !!!")

    def summary(self, cnn_macro_f1: float | None = None) -> str:
        lines = [f"photo-style shortcut baseline ({len(self.labels)} images, {self.folds} folds, "
                 f"{len(self.univariate)} trivial features):"]
        for kind, m in self.models.items():
            lines.append(f"  {MODEL_TITLES[kind]:<20} macro-F1 {fmt(m.macro_f1_mean)} ± {fmt(m.macro_f1_std)} "
                         f"(pooled {fmt(m.pooled_macro_f1)}), ROC-AUC {fmt(m.pooled_auc)}"
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
            md.append(f"| {MODEL_TITLES[kind]}{mark} | {fmt(m.macro_f1_mean)} ± {fmt(m.macro_f1_std)} | "
                      f"{fmt(m.pooled_macro_f1)} | {fmt(m.pooled_auc)} | {fmt(m.pooled_accuracy)} |")
        md += ["", "Per fold (macro-F1 of the baseline): " + ", ".join(
            f"fold {f} {fmt(v)}" for f, v in sorted(best.fold_macro_f1.items())), ""]
        md += ["### Feature importance", "",
               "Alone: ROC-AUC of the feature by itself on all images, folded so that 0.5 is chance and 1 is "
               "perfect. Permutation: mean drop in test-fold ROC-AUC when the feature's column is shuffled "
               "(correlated features, e.g. width/height/aspect or the border channels, stand in for each other "
               "and share it). |coef|: mean absolute coefficient of the standardised logistic regression.", "",
               "| feature | alone | permutation, logistic regression | permutation, random forest | \\|coef\\| |",
               "|---|---:|---:|---:|---:|"]
        lr, rf = self.models.get("logreg"), self.models.get("forest")
        for name, alone in self.top_features(len(self.univariate)):
            md.append(f"| {name} | {fmt(alone)} "
                      f"| {fmt(lr.permutation_importance.get(name, float('nan')) if lr else float('nan'))} "
                      f"| {fmt(rf.permutation_importance.get(name, float('nan')) if rf else float('nan'))} "
                      f"| {fmt(lr.coef_importance.get(name, float('nan')) if lr else float('nan'))} |")
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
