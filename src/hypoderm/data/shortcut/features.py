"""The trivial photo features of the shortcut audit (see hypoderm.data.shortcut): geometry, skin colour and tone,
border, style and file features of one image, without looking at any lesion."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from hypoderm.imaging.colour import ita_degrees, rgb_to_lab, skin_mask
from hypoderm.imaging.io import IMAGE_FORMATS, ImageLoadError, load_rgb_bytes

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
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
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
