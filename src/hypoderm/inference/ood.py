"""Is this a skin photo? A torch-free out-of-distribution check, computed on the image itself.

Everything is computed on the model's input crop: the uint8 RGB image after `hypoderm.inference.preprocess`'s
resize and centre crop, before normalisation. A picture is accepted (`is_skin`) when all three hold:

1. **Skin-pixel fraction** >= `skin_fraction_min`, by a fixed colour rule (Chai & Ngan, 1999,
   "Face segmentation using skin-color map in videophone applications"). For each pixel with 8-bit
   R, G, B (float64 arithmetic; JPEG / BT.601 full-range YCbCr):

       Y  = 0.299 R + 0.587 G + 0.114 B
       Cr = 128 + 0.713 (R - Y)
       Cb = 128 + 0.564 (B - Y)
       skin  <=>  133 <= Cr <= 173  and  77 <= Cb <= 127

   It rejects grass, sky, text on white and grey scenes. Depigmented (vitiligo) patches are
   near-neutral and fail the rule, so this floor is low: a vitiligo photo still shows some skin.
2. **Gate score** >= `gate.threshold`: a small logistic classifier (linear + pairwise terms) over
   the colour, shape and texture statistics below, computed on the crop at `gate.size` pixels (a
   crop of another size is first resized to gate.size x gate.size with Pillow's bilinear
   resampling, `reducing_gap=None`, which the browser reproduces bit for bit, so a model with another
   input size still gets the statistics the gate was fitted on). It is fitted on real skin photos
   against synthetic skin-coloured non-skin pictures (wood, sand, walls, plastics, fabrics, ...; see
   `benchmarks/nonskin/`). The colour rule cannot tell skin from wood or a beige wall; texture
   and layout can: wood and fabric have coherent oriented gradients, sand has pixel-scale noise,
   walls and plastics have almost no texture, a rainbow has spread hues, and every texture is
   uniform across the frame, whereas a skin photo has shading, edges and uneven detail.
3. **Max-logit** >= `max_logit_min` (Hendrycks et al., 2022): the largest raw logit; its floor is
   fitted on validation images (`fit_ood_thresholds`). Weak evidence for a small CNN, kept as is.

## The gate's features, exactly (so the browser, `static/js/preprocess.js`, reproduces them)

Only + - * / and sqrt on float64, all correctly rounded in IEEE 754, and sums taken sequentially
in a fixed order, so JavaScript gets the same bits as numpy here. The crop is cut to whole blocks
of 16 x 16 pixels (`H = 16 * floor(h / 16)`, same for W; at least 2 x 2 blocks). Per pixel (x, y):
Y, Cr, Cb as above; s = 1 if skin else 0; u = Cb - 128, v = Cr - 128, m = sqrt(u*u + v*v);
gx = Y(x+1, y) - Y(x, y), gy = Y(x, y+1) - Y(x, y), hx = Y(x+2, y) - Y(x, y),
hy = Y(x, y+2) - Y(x, y), each 0 where the neighbour lies outside the H x W crop.

Every expression is evaluated left to right as written (Y = (0.299 R + 0.587 G) + 0.114 B).
Sums: for each block (blocks in row-major order, pixels inside a block in row-major order) the 18
per-pixel terms (s, u, v, m, s*Cr, s*Cb, s*Cr*Cr, s*Cb*Cb, s*Y, s*Y*Y, Y, Y*Y, s*Y*Cr, s*Y*Cb,
gx*gx, gy*gy, gx*gy, hx*hx + hy*hy) are added one pixel after another, starting from 0; image
totals T are the block sums added block after block.
With n = H * W, ns = T[s], e = T[gx*gx] + T[gy*gy], and var(a) = max(0, E[a*a] - E[a]^2):

    skin_fraction   ns / n
    hue_coherence   sqrt(T[u]^2 + T[v]^2) / T[m]                       (0 if T[m] = 0)
    skin_cr, skin_cb              mean Cr, Cb over skin pixels         (128 if ns = 0)
    skin_chroma_sd  sqrt(var(Cr) + var(Cb)) over skin pixels           (0 if ns = 0)
    skin_luma_sd    sqrt(var(Y)) over skin pixels                      (0 if ns = 0)
    grad_rms        sqrt(e / n)
    smooth_ratio    sqrt(T[hx*hx + hy*hy] / e) / 2                     (1 if e = 0)
    orient_global   sqrt((T[gxx] - T[gyy])^2 + 4 T[gxy]^2) / e         (0 if e = 0)
    orient_block    sum_b sqrt((gxx_b - gyy_b)^2 + 4 gxy_b^2) / sum_b (gxx_b + gyy_b)   (0 if 0)
    skin_blocks     share of blocks with at least 128 skin pixels
    texture_cv      sd / mean of g_b = sqrt((gxx_b + gyy_b) / 256) over blocks   (0 if mean 0)
    chroma_mean     T[m] / n
    luma_sd         sqrt(var(Y))
    block_luma_cv   sd / mean of the block mean luma over blocks       (0 if mean 0)
    skin_y_cr_corr, skin_y_cb_corr   correlation of Y with Cr, Cb over skin pixels (0 if a variance is 0)

(`_b` = a block's sum; over blocks, mean = (sequential sum) / blocks and sd = sqrt(max(0,
mean(x*x) - mean^2)).) Features in
`gate.sqrt_features` are then replaced by their square root. With s_i = (f_i - mean_i) / scale_i,
the score is, summed in this order, bias + sum_i linear_i * s_i + sum_{i <= j} quadratic_k * (s_i * s_j)
(k runs over pairs (i, j), i <= j, row by row). The gate passes when score >= `threshold`.

The thresholds and gate parameters live in the checkpoint / ONNX metadata under `ood`:
`{"skin_fraction_min": float, "max_logit_min": float, "gate": {...}}`; a model exported before the
gate existed gets `DEFAULT_GATE` (the gate is a property of images, not of the network).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np

CR_RANGE = (133.0, 173.0)
CB_RANGE = (77.0, 127.0)
BLOCK = 16
GATE_FORMAT = "hypoderm-gate/1"

# Validated on the 311 real photos (benchmarks/export/README.md, ood_validation.py): 310 of them
# score above it (the one below is a near-greyscale photo).
DEFAULT_SKIN_FRACTION_MIN = 0.05
# JSON has no -inf; a max-logit floor this low never rejects anything.
PERMISSIVE_MAX_LOGIT_MIN = -1e9

FEATURE_NAMES: tuple[str, ...] = (
    "skin_fraction", "hue_coherence", "skin_cr", "skin_cb", "skin_chroma_sd", "skin_luma_sd", "grad_rms",
    "smooth_ratio", "orient_global", "orient_block", "skin_blocks", "texture_cv", "chroma_mean", "luma_sd",
    "block_luma_cv", "skin_y_cr_corr", "skin_y_cb_corr")



def _load_default_gate() -> dict[str, Any]:
    """The gate fitted by benchmarks/nonskin/fit_gate.py (its README has the data, rates and command)."""
    text = (resources.files("hypoderm") / "assets" / "nonskin_gate.json").read_text(encoding="utf-8")
    return json.loads(text)


DEFAULT_OOD: dict[str, Any] = {"skin_fraction_min": DEFAULT_SKIN_FRACTION_MIN,
                               "max_logit_min": PERMISSIVE_MAX_LOGIT_MIN}


class GateParameterError(ValueError):
    """The `ood.gate` block of a model's metadata is malformed; `str(e)` names the field."""


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


def _seqsum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis one element after another (as a JavaScript loop does), not pairwise."""
    return np.cumsum(a, axis=-1)[..., -1]


def _block_sums(planes: np.ndarray, nby: int, nbx: int) -> np.ndarray:
    """(k, H, W) -> (k, blocks): each block's pixels added one after another in row-major order,
    blocks row-major. 256 vectorised adds over all blocks at once: the order of a JavaScript loop,
    several times faster than a transposed copy and a cumulative sum."""
    v = planes.reshape(planes.shape[0], nby, BLOCK, nbx, BLOCK)
    acc = v[:, :, 0, :, 0].copy()
    for yi in range(BLOCK):
        for xi in range(BLOCK):
            if yi or xi:
                acc += v[:, :, yi, :, xi]
    return acc.reshape(planes.shape[0], nby * nbx)


def _sd_over_mean(values: np.ndarray) -> float:
    n = float(values.shape[-1])
    mean = float(_seqsum(values)) / n
    if mean <= 0.0:
        return 0.0
    return math.sqrt(max(0.0, float(_seqsum(values * values)) / n - mean * mean)) / mean


def gate_features(rgb: np.ndarray) -> dict[str, float]:
    """The gate's statistics of an HWC uint8 RGB crop (definitions in the module docstring)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    nby, nbx = rgb.shape[0] // BLOCK, rgb.shape[1] // BLOCK
    if nby < 2 or nbx < 2:
        raise ValueError(f"image too small for the not-skin gate: {rgb.shape[1]}x{rgb.shape[0]} "
                         f"< {2 * BLOCK}x{2 * BLOCK}")
    h, w = nby * BLOCK, nbx * BLOCK
    a = rgb[:h, :w].astype(np.float64)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    # the 18 per-pixel terms, written in place (same operations, in the same order, as the docstring's
    # products evaluated left to right; shared left factors such as s*Y are computed once)
    p = np.empty((18, h, w))
    s_, u, v, m, scr, scb, scr2, scb2, sy, sy2, y, y2, sycr, sycb, gxx, gyy, gxy, hh = p
    np.add(np.add(0.299 * r, 0.587 * g), 0.114 * b, out=y)
    cr = 128.0 + 0.713 * (r - y)
    cb = 128.0 + 0.564 * (b - y)
    s_[...] = (cr >= CR_RANGE[0]) & (cr <= CR_RANGE[1]) & (cb >= CB_RANGE[0]) & (cb <= CB_RANGE[1])
    np.subtract(cb, 128.0, out=u)
    np.subtract(cr, 128.0, out=v)
    np.sqrt(np.add(u * u, v * v), out=m)
    np.multiply(s_, cr, out=scr)
    np.multiply(s_, cb, out=scb)
    np.multiply(scr, cr, out=scr2)
    np.multiply(scb, cb, out=scb2)
    np.multiply(s_, y, out=sy)
    np.multiply(sy, y, out=sy2)
    np.multiply(y, y, out=y2)
    np.multiply(sy, cr, out=sycr)
    np.multiply(sy, cb, out=sycb)
    gx, gy, hx, hy = (np.zeros_like(y) for _ in range(4))
    np.subtract(y[:, 1:], y[:, :-1], out=gx[:, :-1])
    np.subtract(y[1:, :], y[:-1, :], out=gy[:-1, :])
    np.subtract(y[:, 2:], y[:, :-2], out=hx[:, :-2])
    np.subtract(y[2:, :], y[:-2, :], out=hy[:-2, :])
    np.multiply(gx, gx, out=gxx)
    np.multiply(gy, gy, out=gyy)
    np.multiply(gx, gy, out=gxy)
    np.add(hx * hx, hy * hy, out=hh)
    planes = p
    bs = _block_sums(planes, nby, nbx)  # (planes, blocks)
    t = [float(x) for x in _seqsum(bs)]
    (t_s, t_u, t_v, t_m, t_cr, t_cb, t_cr2, t_cb2, t_y_s, t_y2_s, t_y, t_y2, t_ycr, t_ycb,
     t_gxx, t_gyy, t_gxy, t_h) = t
    n = float(h * w)
    f: dict[str, float] = {"skin_fraction": t_s / n}
    f["hue_coherence"] = math.sqrt(t_u * t_u + t_v * t_v) / t_m if t_m > 0.0 else 0.0
    if t_s > 0.0:
        mcr, mcb, my = t_cr / t_s, t_cb / t_s, t_y_s / t_s
        vcr = max(0.0, t_cr2 / t_s - mcr * mcr)
        vcb = max(0.0, t_cb2 / t_s - mcb * mcb)
        vy = max(0.0, t_y2_s / t_s - my * my)
        f["skin_cr"], f["skin_cb"] = mcr, mcb
        f["skin_chroma_sd"] = math.sqrt(vcr + vcb)
        f["skin_luma_sd"] = math.sqrt(vy)
        f["skin_y_cr_corr"] = (t_ycr / t_s - my * mcr) / math.sqrt(vy * vcr) if vy * vcr > 0.0 else 0.0
        f["skin_y_cb_corr"] = (t_ycb / t_s - my * mcb) / math.sqrt(vy * vcb) if vy * vcb > 0.0 else 0.0
    else:
        f.update(skin_cr=128.0, skin_cb=128.0, skin_chroma_sd=0.0, skin_luma_sd=0.0,
                 skin_y_cr_corr=0.0, skin_y_cb_corr=0.0)
    e = t_gxx + t_gyy
    f["grad_rms"] = math.sqrt(e / n)
    f["smooth_ratio"] = math.sqrt(t_h / e) / 2.0 if e > 0.0 else 1.0
    f["orient_global"] = math.sqrt((t_gxx - t_gyy) * (t_gxx - t_gyy) + 4.0 * t_gxy * t_gxy) / e if e > 0.0 else 0.0
    b_gxx, b_gyy, b_gxy = bs[14], bs[15], bs[16]
    b_e = b_gxx + b_gyy
    sum_e = float(_seqsum(b_e))
    coh = np.sqrt((b_gxx - b_gyy) * (b_gxx - b_gyy) + 4.0 * b_gxy * b_gxy)
    f["orient_block"] = float(_seqsum(coh)) / sum_e if sum_e > 0.0 else 0.0
    f["skin_blocks"] = float(_seqsum((bs[0] >= BLOCK * BLOCK / 2).astype(np.float64))) / float(nby * nbx)
    f["texture_cv"] = _sd_over_mean(np.sqrt(b_e / float(BLOCK * BLOCK)))
    f["chroma_mean"] = t_m / n
    mean_y = t_y / n
    f["luma_sd"] = math.sqrt(max(0.0, t_y2 / n - mean_y * mean_y))
    f["block_luma_cv"] = _sd_over_mean(bs[10] / float(BLOCK * BLOCK))
    return {name: float(f[name]) for name in FEATURE_NAMES}


def validate_gate(gate: Any) -> dict[str, Any]:
    """Check an `ood.gate` block; returns it, or raises GateParameterError naming the bad field."""
    if not isinstance(gate, dict):
        raise GateParameterError(f"ood.gate must be an object, got {type(gate).__name__}")
    if gate.get("format") != GATE_FORMAT:
        raise GateParameterError(f"ood.gate.format must be {GATE_FORMAT!r}, got {gate.get('format')!r}")
    size = gate.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 2 * BLOCK:
        raise GateParameterError(f"ood.gate.size must be an integer >= {2 * BLOCK} (the crop side it was fitted on), "
                                 f"got {size!r}")
    if list(gate.get("features", [])) != list(FEATURE_NAMES):
        raise GateParameterError(f"ood.gate.features must list {len(FEATURE_NAMES)} features in this order: "
                                 f"{', '.join(FEATURE_NAMES)}")
    nf = len(FEATURE_NAMES)
    sizes = {"mean": nf, "scale": nf, "linear": nf, "quadratic": nf * (nf + 1) // 2}
    for key, size in sizes.items():
        vals = gate.get(key)
        if not isinstance(vals, list) or len(vals) != size or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vals):
            raise GateParameterError(f"ood.gate.{key} must be a list of {size} finite numbers")
    if any(x <= 0 for x in gate["scale"]):
        raise GateParameterError("ood.gate.scale must be > 0 everywhere")
    for key in ("bias", "threshold"):
        x = gate.get(key)
        if not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x):
            raise GateParameterError(f"ood.gate.{key} must be a finite number, got {x!r}")
    sqrt_features = gate.get("sqrt_features", [])
    if not isinstance(sqrt_features, list) or any(name not in FEATURE_NAMES for name in sqrt_features):
        raise GateParameterError(f"ood.gate.sqrt_features must be a list of feature names ({', '.join(FEATURE_NAMES)})")
    return gate


DEFAULT_GATE: dict[str, Any] = validate_gate(_load_default_gate())


def gate_score(features: dict[str, float], gate: dict[str, Any]) -> float:
    """The gate's logistic score (log-odds of "skin photo") for `features` under parameters `gate`."""
    roots = set(gate.get("sqrt_features", []))
    z = []
    for i, name in enumerate(FEATURE_NAMES):
        x = features[name]
        x = math.sqrt(max(0.0, x)) if name in roots else x
        z.append((x - float(gate["mean"][i])) / float(gate["scale"][i]))
    score = float(gate["bias"])
    for i in range(len(z)):
        score += float(gate["linear"][i]) * z[i]
    k = 0
    for i in range(len(z)):
        for j in range(i, len(z)):
            score += float(gate["quadratic"][k]) * (z[i] * z[j])
            k += 1
    return score


def at_gate_size(rgb: np.ndarray, size: int) -> np.ndarray:
    """The crop as the gate sees it: resized to size x size (Pillow bilinear, reducing_gap=None) unless it is."""
    if rgb.shape[:2] == (size, size):
        return rgb
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None))


def with_gate(ood: dict[str, Any] | None) -> dict[str, Any]:
    """`ood` thresholds completed with the defaults (skin floor, permissive max-logit, DEFAULT_GATE)."""
    return {**DEFAULT_OOD, "gate": DEFAULT_GATE, **(ood or {})}


def validate_ood(ood: Any) -> None:
    """Raise ValueError (GateParameterError for the gate) naming the first bad field of an `ood` block."""
    if ood is None:
        return
    if not isinstance(ood, dict):
        raise ValueError(f"ood must be an object, got {type(ood).__name__}")
    for key in ("skin_fraction_min", "max_logit_min"):
        x = ood.get(key)
        if key in ood and (not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x)):
            raise ValueError(f"ood.{key} must be a finite number, got {x!r}")
    if "gate" in ood and ood["gate"] is not None:
        validate_gate(ood["gate"])


def ood_check(rgb_crop: np.ndarray, logits: np.ndarray, thresholds: dict[str, Any] | None) -> dict[str, Any]:
    """The `ood` block of a prediction: skin fraction, gate score, max logit and the verdict `is_skin`.

    `thresholds["gate"] = None` switches the gate off (the colour floor and max-logit floor remain)."""
    th = with_gate(thresholds)
    max_logit = float(np.max(logits))
    gate = th["gate"]
    if gate is not None:
        feats = gate_features(at_gate_size(rgb_crop, int(gate["size"])))
        frac = feats["skin_fraction"]
        score = gate_score(feats, gate)
        gate_ok = score >= float(gate["threshold"])
    else:
        frac, score, gate_ok = skin_fraction(rgb_crop), None, True
    is_skin = frac >= float(th["skin_fraction_min"]) and gate_ok and max_logit >= float(th["max_logit_min"])
    return {"skin_fraction": frac, "gate_score": score, "max_logit": max_logit, "is_skin": bool(is_skin)}


def fit_ood_thresholds(max_logits: Sequence[float] | np.ndarray, quantile: float = 0.01,
                       skin_fraction_min: float = DEFAULT_SKIN_FRACTION_MIN) -> dict[str, Any]:
    """Thresholds from in-distribution validation images, with the default gate.

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
            "fitted_on": int(values.size), "quantile": float(quantile), "gate": DEFAULT_GATE}
