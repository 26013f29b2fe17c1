"""Is this a skin photo? A torch-free out-of-distribution check in two parts.

1. **Skin-pixel fraction** by a fixed colour rule (Chai & Ngan, 1999, "Face segmentation using
   skin-color map in videophone applications"), computed on the model's input crop (the uint8
   image after `hypoderm.preprocess`'s resize and centre crop, before normalisation). For each
   pixel with 8-bit R, G, B (arithmetic in float64, JPEG / BT.601 full-range YCbCr):

       Y  = 0.299 R + 0.587 G + 0.114 B
       Cr = 128 + 0.713 (R - Y)
       Cb = 128 + 0.564 (B - Y)
       skin  <=>  133 <= Cr <= 173  and  77 <= Cb <= 127

   The fraction is the share of skin pixels. The rule is a handful of multiply-adds so the
   browser app reproduces it exactly in JavaScript (doubles there, float64 here). It rejects
   grass, sky, text on white, blue/green drawings and grey scenes; it cannot reject skin-toned
   objects (wood, sand, orange paint), which is what the second part is for. Depigmented
   (vitiligo) patches are near-neutral and fail the rule, so the threshold is a low fraction,
   not a majority: a vitiligo photo still shows surrounding skin.
2. **Max-logit** (Hendrycks et al., 2022, "Scaling out-of-distribution detection for real-world
   settings"): the largest raw logit; a low one means the network recognises none of its classes.
   Its threshold is fitted on in-distribution validation images (`fit_ood_thresholds`) as a low
   quantile, so about `quantile` of real skin photos would be wrongly rejected by it.

The thresholds live in the checkpoint / ONNX metadata under `ood`:
`{"skin_fraction_min": float, "max_logit_min": float}`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

CR_RANGE = (133.0, 173.0)
CB_RANGE = (77.0, 127.0)

# Validated on the 311 real photos (benchmarks/export/README.md, ood_validation.py): 310 of them
# score above it (the one below is a near-greyscale photo), while the drawn non-skin pictures in
# tests/test_ood.py score ~0.
DEFAULT_SKIN_FRACTION_MIN = 0.05
# JSON has no -inf; a max-logit floor this low never rejects anything.
PERMISSIVE_MAX_LOGIT_MIN = -1e9
DEFAULT_OOD: dict[str, float] = {"skin_fraction_min": DEFAULT_SKIN_FRACTION_MIN,
                                 "max_logit_min": PERMISSIVE_MAX_LOGIT_MIN}


def skin_mask(rgb: np.ndarray) -> np.ndarray:
    """HWC uint8 RGB -> HW bool, True where the Chai & Ngan YCrCb rule says skin."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB array, got shape {rgb.shape}")
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = 128.0 + 0.713 * (r - y)
    cb = 128.0 + 0.564 * (b - y)
    return (cr >= CR_RANGE[0]) & (cr <= CR_RANGE[1]) & (cb >= CB_RANGE[0]) & (cb <= CB_RANGE[1])


def skin_fraction(rgb: np.ndarray) -> float:
    """Share of skin-coloured pixels in an HWC uint8 RGB array (0..1)."""
    return float(skin_mask(rgb).mean())


def ood_check(rgb_crop: np.ndarray, logits: np.ndarray, thresholds: dict[str, Any] | None) -> dict[str, Any]:
    """The `ood` block of a prediction: skin fraction, max logit and the verdict `is_skin`."""
    th = {**DEFAULT_OOD, **(thresholds or {})}
    frac = skin_fraction(rgb_crop)
    max_logit = float(np.max(logits))
    is_skin = frac >= float(th["skin_fraction_min"]) and max_logit >= float(th["max_logit_min"])
    return {"skin_fraction": frac, "max_logit": max_logit, "is_skin": bool(is_skin)}


def fit_ood_thresholds(max_logits: Sequence[float] | np.ndarray, quantile: float = 0.01,
                       skin_fraction_min: float = DEFAULT_SKIN_FRACTION_MIN) -> dict[str, float]:
    """Thresholds from in-distribution validation images.

    `max_logits`: the max logit of each validation image (real skin photos). The max-logit floor
    is their `quantile` quantile, so about that share of real photos would be rejected by it.
    Fewer than 20 values give too noisy a quantile: the floor is then left permissive.
    """
    if not 0.0 <= quantile < 0.5:
        raise ValueError(f"quantile must be in [0, 0.5), got {quantile}")
    values = np.asarray(max_logits, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    floor = float(np.quantile(values, quantile)) if values.size >= 20 else PERMISSIVE_MAX_LOGIT_MIN
    return {"skin_fraction_min": float(skin_fraction_min), "max_logit_min": floor,
            "fitted_on": int(values.size), "quantile": float(quantile)}
