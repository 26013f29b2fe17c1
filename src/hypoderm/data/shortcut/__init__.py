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

from hypoderm.data.shortcut.baseline import column_predictability, predictability_line, shortcut_baseline
from hypoderm.data.shortcut.classifiers import (
    MODEL_KINDS,
    MODEL_TITLES,
    FittedBaseline,
    ShortcutError,
    fit_baseline,
    predict_baseline,
    roc_auc,
    score_baseline,
    separability,
)
from hypoderm.data.shortcut.features import (
    ANALYSIS_MAX_SIDE,
    BORDER_FEATURES,
    BORDER_PX,
    FEATURE_NAMES,
    FILE_FEATURES,
    GEOMETRY_FEATURES,
    ITA_BANDS,
    NO_SKIN_BAND,
    PIXEL_FEATURES,
    SKIN_FEATURES,
    STYLE_FEATURES,
    feature_matrix,
    file_features,
    has_exif,
    ita_band,
    photo_features,
)
from hypoderm.data.shortcut.report import WARN_ABOVE, WARN_MARGIN, ModelScore, ShortcutReport

__all__ = [
    "ANALYSIS_MAX_SIDE", "BORDER_FEATURES", "BORDER_PX", "FEATURE_NAMES", "FILE_FEATURES", "GEOMETRY_FEATURES",
    "ITA_BANDS", "MODEL_KINDS", "MODEL_TITLES", "NO_SKIN_BAND", "PIXEL_FEATURES", "SKIN_FEATURES", "STYLE_FEATURES",
    "WARN_ABOVE", "WARN_MARGIN", "FittedBaseline", "ModelScore", "ShortcutError", "ShortcutReport",
    "column_predictability", "feature_matrix", "file_features", "fit_baseline", "has_exif", "ita_band",
    "photo_features", "predict_baseline", "predictability_line", "roc_auc", "score_baseline", "separability",
    "shortcut_baseline",
]
