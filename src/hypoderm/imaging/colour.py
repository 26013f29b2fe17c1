"""The colour rules, one definition each (numpy, on HxWx3 uint8 RGB unless said otherwise).

- The **skin-colour rule** of Chai & Ngan (1999), "Face segmentation using skin-color map in videophone
  applications": JPEG / BT.601 full-range YCbCr, Y = (0.299 R + 0.587 G) + 0.114 B, Cr = 128 + 0.713 (R - Y),
  Cb = 128 + 0.564 (B - Y), skin <=> cr_lo <= Cr <= cr_hi and cb_lo <= Cb <= cb_hi. The box is the shipped
  not-skin gate's `skin_rule` (src/hypoderm/assets/nonskin_gate.json), which the browser reads too, so the rule
  has one home: that file. Depigmented patches are near-neutral and fail it.
- **CIELAB** (sRGB, IEC 61966-2-1 transfer curve, D65 white): `rgb_to_lab`, `lab_to_rgb`.
- **ITA**, the individual typology angle atan((L* - 50) / b*) in degrees, a skin-tone estimate (Chardon 1991).

Used by the not-skin gate (hypoderm.inference.ood), the photo-style audit (hypoderm.data.shortcut) and the
training augmentations (hypoderm.engine.augment).
"""

from __future__ import annotations

import functools
import json
import math
from importlib import resources
from typing import Any

import numpy as np

from hypoderm.errors import HypodermError

# the first gate format's box, for a gate file that names none
CHAI_NGAN_RULE: dict[str, list[float]] = {"cr": [133.0, 173.0], "cb": [77.0, 127.0]}
# The shipped not-skin gate (hypoderm.inference.ood.default_gate), home of the skin rule. Read when first needed,
# not at import: a damaged file is then one GateFileError naming it (exit 2), never an import-time traceback.
GATE_FILE = resources.files("hypoderm") / "assets" / "nonskin_gate.json"


class GateFileError(HypodermError, ValueError):
    """The shipped not-skin gate file (GATE_FILE) cannot be read or is invalid; `str(e)` names the file."""


def gate_file_error(problem: str) -> GateFileError:
    return GateFileError(f"{GATE_FILE} (the not-skin gate shipped with hypoderm): {problem}; restore the file "
                         "(reinstall hypoderm) or refit it with benchmarks/nonskin/fit_gate.py")


@functools.cache
def shipped_gate_file() -> dict[str, Any]:
    """The JSON object of GATE_FILE, read once; GateFileError when it cannot be read or is no JSON object."""
    try:
        data = json.loads(GATE_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # a UnicodeDecodeError is a ValueError
        raise gate_file_error(f"cannot be read as JSON ({e})") from e
    if not isinstance(data, dict):
        raise gate_file_error(f"expected a JSON object, got {type(data).__name__}")
    return data


@functools.cache
def shipped_skin_rule() -> dict[str, list[float]]:
    """The skin rule of the shipped gate file (Chai & Ngan's box when it names none)."""
    rule = shipped_gate_file().get("skin_rule", CHAI_NGAN_RULE)
    try:
        box = {k: [float(x) for x in rule[k]] for k in ("cr", "cb")}
    except (TypeError, KeyError, ValueError) as e:
        raise gate_file_error(f"skin_rule must be {{\"cr\": [lo, hi], \"cb\": [lo, hi]}}, got {rule!r}") from e
    if any(len(v) != 2 or not all(math.isfinite(x) for x in v) or not 0 <= v[0] <= v[1] <= 255 for v in box.values()):
        raise gate_file_error(f"skin_rule must be two [lo, hi] ranges with 0 <= lo <= hi <= 255, got {rule!r}")
    return box


def __getattr__(name: str) -> Any:
    """SKIN_RULE: the shipped skin rule, read on first use (shipped_skin_rule)."""
    if name == "SKIN_RULE":
        return shipped_skin_rule()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ycc(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Y, Cr, Cb) as float64 arrays of an (..., 3) RGB array, evaluated left to right as the gate documents."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return y, 128.0 + 0.713 * (r - y), 128.0 + 0.564 * (b - y)


def in_skin_box(cr: np.ndarray, cb: np.ndarray, rule: dict[str, list[float]] | None = None) -> np.ndarray:
    """Bool array: where (Cr, Cb) lies inside the rule's box."""
    rule = rule or shipped_skin_rule()
    return (cr >= rule["cr"][0]) & (cr <= rule["cr"][1]) & (cb >= rule["cb"][0]) & (cb <= rule["cb"][1])


def skin_mask(rgb: np.ndarray, rule: dict[str, list[float]] | None = None) -> np.ndarray:
    """HWC (or (..., 3)) uint8 RGB -> bool mask of the skin-coloured pixels."""
    if rgb.ndim < 2 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an RGB array with 3 channels last, got shape {rgb.shape}")
    _, cr, cb = ycc(rgb)
    return in_skin_box(cr, cb, rule)


# ---- CIELAB --------------------------------------------------------------------------------------

_M_RGB2XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
_M_XYZ2RGB = np.linalg.inv(_M_RGB2XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_DELTA = 6.0 / 29.0
_SRGB_LINEAR = np.where(np.arange(256) / 255.0 <= 0.04045, np.arange(256) / 255.0 / 12.92,
                        ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 sRGB -> (..., 3) float64 CIELAB (L* 0..100, a*, b*)."""
    lin = _SRGB_LINEAR[np.asarray(rgb).astype(np.intp)]
    xyz = lin @ _M_RGB2XYZ.T / _WHITE
    f = np.where(xyz > _DELTA ** 3, np.cbrt(np.maximum(xyz, 0.0)), xyz / (3 * _DELTA * _DELTA) + 4.0 / 29.0)
    return np.stack([116.0 * f[..., 1] - 16.0, 500.0 * (f[..., 0] - f[..., 1]), 200.0 * (f[..., 1] - f[..., 2])],
                    axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Inverse of `rgb_to_lab`: (..., 3) CIELAB -> (..., 3) uint8 sRGB, out-of-gamut colours clipped."""
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > _DELTA, f ** 3, 3 * _DELTA * _DELTA * (f - 4.0 / 29.0)) * _WHITE
    lin = np.clip(xyz @ _M_XYZ2RGB.T, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.maximum(lin, 1e-12) ** (1 / 2.4) - 0.055)
    return (np.clip(srgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def ita_degrees(lightness: float, b_star: float) -> float:
    """Individual typology angle, atan((L* - 50) / b*) in degrees. b* <= 0 (not a skin colour)
    is treated as a tiny positive b*, giving +-90 rather than a jump of 180 degrees."""
    return float(np.degrees(np.arctan((lightness - 50.0) / max(b_star, 1e-6))))
