"""Is this a skin photo, and can it be judged? A torch-free check computed on the model's own input crop.

Everything is computed on the uint8 RGB crop the model sees (`hypoderm.inference.preprocess`'s resize and centre
crop, before normalisation); a crop of another size than `gate.size` is first resized to it (Pillow's bilinear
resampling, `reducing_gap=None`, which the browser reproduces bit for bit). Refusing a real skin photo is a silent
failure that a user cannot fix by retaking it, while a picture that is not skin costs little when the answer is
withheld, so there are two outcomes short of an answer:

**Refused** (status `not_skin`, no class; `reason` says which check failed, and the message what to do):

- `too_dark`: the crop's mean luma is below `gate.luma_min` (nearly black: nothing can be judged);
- `little_skin`: fewer than `skin_fraction_min` of the pixels are skin-coloured by the fixed YCrCb rule of Chai &
  Ngan (1999), `gate.skin_rule` (defaults below). Depigmented patches are near-neutral and fail it: the floor is low;
- `not_skin_like`: the gate's score is below `gate.threshold`: the colour, layout and texture statistics look like a
  flat texture, an object or a drawing (wood, sand, walls, fabric, paper, food, plastics, ...), not a skin photo.

**Withheld** (status `uncertain`, candidates shown as equals, see a dermatologist): the crop passed, but either the
gate's score is below `gate.answer_threshold` (`unsure_skin`: it may not be skin, or it is an unusual photo of skin)
or the model's largest raw logit is below `max_logit_min` (`unusual_logits`, Hendrycks et al., 2022: the network's
own evidence is weak).

Both gate thresholds were chosen on photos of sources the gate never saw (held out by origin;
`benchmarks/nonskin/`): `threshold` keeps every held-out source's skin photos, `answer_threshold` trades answered
skin photos against non-skin pictures that reach the model.

## The gate's statistics, exactly (so the browser, `static/js/ood.js`, reproduces them)

Only + - * / and sqrt on float64, all correctly rounded in IEEE 754, and sums taken sequentially
in a fixed order, so JavaScript gets the same bits as numpy here. The crop is cut to whole blocks
of B x B pixels, B = `gate.block` (`H = B * floor(h / B)`, same for W; at least 2 x 2 blocks). Per
pixel (x, y): Y = (0.299 R + 0.587 G) + 0.114 B, Cr = 128 + 0.713 (R - Y), Cb = 128 + 0.564 (B - Y);
s = 1 if cr_lo <= Cr <= cr_hi and cb_lo <= Cb <= cb_hi (`gate.skin_rule`) else 0; u = Cb - 128,
v = Cr - 128, m = sqrt(u*u + v*v); gx = Y(x+1, y) - Y(x, y), gy = Y(x, y+1) - Y(x, y),
hx = Y(x+2, y) - Y(x, y), hy = Y(x, y+2) - Y(x, y), each 0 where the neighbour lies outside the H x W crop.

Every expression is evaluated left to right as written. Sums: for each block (blocks in row-major
order, pixels inside a block in row-major order) the 18 per-pixel terms (s, u, v, m, s*Cr, s*Cb,
s*Cr*Cr, s*Cb*Cb, s*Y, s*Y*Y, Y, Y*Y, s*Y*Cr, s*Y*Cb, gx*gx, gy*gy, gx*gy, hx*hx + hy*hy) are added
one pixel after another, starting from 0; image totals T are the block sums added block after block.
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
    skin_blocks     share of blocks with at least B*B/2 skin pixels
    texture_cv      sd / mean of g_b = sqrt((gxx_b + gyy_b) / (B*B)) over blocks   (0 if mean 0)
    chroma_mean     T[m] / n
    luma_sd         sqrt(var(Y))
    block_luma_cv   sd / mean of the block mean luma over blocks       (0 if mean 0)
    skin_y_cr_corr, skin_y_cb_corr   correlation of Y with Cr, Cb over skin pixels (0 if a variance is 0)
    luma_mean       T[Y] / n                                           (the too-dark check; not a score input)

(`_b` = a block's sum; over blocks, mean = (sequential sum) / blocks and sd = sqrt(max(0,
mean(x*x) - mean^2)).) The score uses the statistics named in `gate.features`; those in
`gate.sqrt_features` are first replaced by their square root. With s_i = (f_i - mean_i) / scale_i, the
score is, summed in this order, bias + sum_i linear_i * s_i + sum_{i <= j} quadratic_k * (s_i * s_j)
(k runs over pairs (i, j), i <= j, row by row).

The thresholds and gate parameters live in the checkpoint / ONNX metadata under `ood`: `{"skin_fraction_min": float,
"max_logit_min": float, "gate": {...}}`; a model exported before the gate existed gets `DEFAULT_GATE` (the gate is a
property of images, not of the network). Gates of the first format (`hypoderm-gate/1`: fixed block and skin rule, no
answer threshold, no dark check) still load."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hypoderm.errors import HypodermError
from hypoderm.imaging.colour import (
    CHAI_NGAN_RULE,
    GATE_FILE,  # noqa: F401 - re-exported: the shipped gate's file
    GateFileError,  # noqa: F401 - re-exported: a damaged shipped gate file
    gate_file_error,
    in_skin_box,
    shipped_gate_file,
    skin_mask,
)
from hypoderm.inference.skincheck import skin_check_reason, validate_skin_check

GATE_FORMAT = "hypoderm-gate/2"
GATE_FORMATS = ("hypoderm-gate/1", GATE_FORMAT)
# the first format's fixed constants (a v1 gate carries neither block nor skin rule)
V1_BLOCK = 16
V1_SKIN_RULE: dict[str, list[float]] = CHAI_NGAN_RULE

# JSON has no -inf; a max-logit floor this low never withholds anything.
PERMISSIVE_MAX_LOGIT_MIN = -1e9

FEATURE_NAMES: tuple[str, ...] = (
    "skin_fraction", "hue_coherence", "skin_cr", "skin_cb", "skin_chroma_sd", "skin_luma_sd", "grad_rms",
    "smooth_ratio", "orient_global", "orient_block", "skin_blocks", "texture_cv", "chroma_mean", "luma_sd",
    "block_luma_cv", "skin_y_cr_corr", "skin_y_cb_corr")
STAT_NAMES: tuple[str, ...] = (*FEATURE_NAMES, "luma_mean")  # what gate_features returns

# `ood_check`'s reasons, with the status each gives (with the verdict's own: hypoderm.inference.verdict.REASONS).
REASONS: dict[str, str] = {"too_dark": "not_skin", "little_skin": "not_skin", "not_skin_like": "not_skin",
                           "unsure_skin": "uncertain", "unusual_logits": "uncertain"}


# Largest gate crop side. The gate computes 18 float64 planes of the crop plus a few temporaries: about 40 MB per
# prediction at 512 px (0.2 s of CPU), ~1 GB at 2048 px (issue 28: a sidecar's size of 2048 was accepted). The
# shipped gate is fitted at 128 px; the browser mirrors the same computation on a phone.
MAX_GATE_SIZE = 512


class GateParameterError(HypodermError, ValueError):
    """The `ood.gate` block of a model's metadata is malformed; `str(e)` names the field."""


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_gate(gate: Any) -> dict[str, Any]:
    """Check an `ood.gate` block; returns it, or raises GateParameterError naming the bad field."""
    if not isinstance(gate, dict):
        raise GateParameterError(f"ood.gate must be an object, got {type(gate).__name__}")
    if gate.get("format") not in GATE_FORMATS:
        raise GateParameterError(f"ood.gate.format must be one of {', '.join(GATE_FORMATS)}, "
                                 f"got {gate.get('format')!r}")
    v1 = gate["format"] == GATE_FORMATS[0]
    block = gate.get("block", V1_BLOCK if v1 else None)
    if not isinstance(block, int) or isinstance(block, bool) or not 2 <= block <= 64:
        raise GateParameterError(f"ood.gate.block must be an integer in 2..64 (block side in pixels), got {block!r}")
    size = gate.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 2 * block <= size <= MAX_GATE_SIZE:
        raise GateParameterError(f"ood.gate.size must be an integer in {2 * block}..{MAX_GATE_SIZE} (the crop side "
                                 f"it was fitted on; larger crops cost too much memory per prediction), got {size!r}")
    rule = gate.get("skin_rule", V1_SKIN_RULE if v1 else None)
    if not isinstance(rule, dict) or any(
            not isinstance(rule.get(k), list) or len(rule[k]) != 2 or not all(_number(x) for x in rule[k])
            or not 0 <= rule[k][0] <= rule[k][1] <= 255 for k in ("cr", "cb")):
        raise GateParameterError("ood.gate.skin_rule must be {\"cr\": [lo, hi], \"cb\": [lo, hi]} with "
                                 "0 <= lo <= hi <= 255")
    features = gate.get("features")
    if (not isinstance(features, list) or not features or len(set(features)) != len(features)
            or any(f not in FEATURE_NAMES for f in features)):
        raise GateParameterError(f"ood.gate.features must list distinct statistics of: {', '.join(FEATURE_NAMES)}")
    nf = len(features)
    sizes = {"mean": nf, "scale": nf, "linear": nf, "quadratic": nf * (nf + 1) // 2}
    for key, n in sizes.items():
        vals = gate.get(key)
        if not isinstance(vals, list) or len(vals) != n or not all(_number(x) for x in vals):
            raise GateParameterError(f"ood.gate.{key} must be a list of {n} finite numbers")
    if any(x <= 0 for x in gate["scale"]):
        raise GateParameterError("ood.gate.scale must be > 0 everywhere")
    for key in ("bias", "threshold", *(() if v1 else ("answer_threshold", "luma_min"))):
        if not _number(gate.get(key)):
            raise GateParameterError(f"ood.gate.{key} must be a finite number, got {gate.get(key)!r}")
    if not v1 and gate["answer_threshold"] < gate["threshold"]:
        raise GateParameterError("ood.gate.answer_threshold must be >= ood.gate.threshold (answers need more than "
                                 "not being refused)")
    sqrt_features = gate.get("sqrt_features", [])
    if not isinstance(sqrt_features, list) or any(name not in features for name in sqrt_features):
        raise GateParameterError("ood.gate.sqrt_features must be a list of names from ood.gate.features")
    _check_probe_scores(gate)
    return gate


def probe_crops(size: int) -> dict[str, np.ndarray]:
    """Fixed size x size uint8 RGB crops on which every valid gate must give a finite score: flat mid-grey, flat
    skin colour, uniform noise (seeded), and black beside white (the largest gradients)."""
    noise = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    halves = np.zeros((size, size, 3), np.uint8)
    halves[:, size // 2:] = 255
    return {"mid-grey": np.full((size, size, 3), 128, np.uint8),
            "skin-coloured": np.broadcast_to(np.array([200, 150, 120], np.uint8), (size, size, 3)).copy(),
            "random noise": noise, "black and white halves": halves}


def _check_probe_scores(gate: dict[str, Any]) -> None:
    """Every field can be finite and in range and the score still overflow: a scale of 1e-300 turns each feature
    into ~1e300 and their products into inf - inf = NaN, a score that compares False with any threshold (the
    photo is answered) and cannot be written as JSON. Score the probe crops and refuse a gate that is not finite."""
    for name, crop in probe_crops(int(gate["size"])).items():
        score = gate_score(gate_features(crop, gate), gate)
        if not math.isfinite(score):
            raise GateParameterError(f"ood.gate gives a non-finite score ({score}) on a {name} test crop: its "
                                     "mean/scale/linear/quadratic numbers overflow (e.g. a scale near 0)")


@functools.cache
def default_gate() -> dict[str, Any]:
    """The gate shipped in GATE_FILE, fitted by benchmarks/nonskin/fit_gate.py (its README has the data, rates
    and command); read and checked once, when first needed. GateFileError (naming the file) when it is damaged."""
    gate = shipped_gate_file()
    try:
        validate_gate(gate)
    except GateParameterError as e:
        raise gate_file_error(str(e)) from e
    floor = gate.get("skin_fraction_min", 0.05)
    if not _number(floor) or not 0.0 <= floor <= 1.0:
        raise gate_file_error(f"skin_fraction_min must be a number in [0, 1], got {floor!r}")
    return gate


def default_ood() -> dict[str, Any]:
    """The permissive `ood` thresholds with the shipped gate's skin floor (a new dict each call)."""
    return {"skin_fraction_min": default_skin_fraction_min(), "max_logit_min": PERMISSIVE_MAX_LOGIT_MIN}


def default_skin_fraction_min() -> float:
    """Refuse below this share of skin-coloured pixels (benchmarks/nonskin: real photos of every source keep it)."""
    return float(default_gate().get("skin_fraction_min", 0.05))


def __getattr__(name: str) -> Any:
    """DEFAULT_GATE, DEFAULT_SKIN_FRACTION_MIN, DEFAULT_OOD: the shipped gate's values, read on first use."""
    lazy: dict[str, Callable[[], Any]] = {"DEFAULT_GATE": default_gate, "DEFAULT_OOD": default_ood,
                                          "DEFAULT_SKIN_FRACTION_MIN": default_skin_fraction_min}
    if name in lazy:
        return lazy[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _gate_rule(gate: dict[str, Any] | None) -> tuple[int, dict[str, list[float]]]:
    """(block side, skin rule) of a gate, the first format's constants for a v1 gate."""
    gate = gate or default_gate()
    return int(gate.get("block", V1_BLOCK)), gate.get("skin_rule", V1_SKIN_RULE)


def skin_fraction(rgb: np.ndarray) -> float:
    """Share of skin-coloured pixels in an HWC uint8 RGB array (0..1), by the shipped rule."""
    return float(skin_mask(rgb).mean())


def _seqsum(a: np.ndarray) -> np.ndarray:
    """Sum over the last axis one element after another (as a JavaScript loop does), not pairwise."""
    return np.cumsum(a, axis=-1)[..., -1]


def _block_sums(planes: np.ndarray, nby: int, nbx: int, block: int) -> np.ndarray:
    """(k, H, W) -> (k, blocks): each block's pixels added one after another in row-major order,
    blocks row-major. block*block vectorised adds over all blocks at once: the order of a JavaScript
    loop, several times faster than a transposed copy and a cumulative sum."""
    v = planes.reshape(planes.shape[0], nby, block, nbx, block)
    acc = v[:, :, 0, :, 0].copy()
    for yi in range(block):
        for xi in range(block):
            if yi or xi:
                acc += v[:, :, yi, :, xi]
    return acc.reshape(planes.shape[0], nby * nbx)


def _sd_over_mean(values: np.ndarray) -> float:
    n = float(values.shape[-1])
    mean = float(_seqsum(values)) / n
    if mean <= 0.0:
        return 0.0
    return math.sqrt(max(0.0, float(_seqsum(values * values)) / n - mean * mean)) / mean


def gate_features(rgb: np.ndarray, gate: dict[str, Any] | None = None) -> dict[str, float]:
    """The gate's statistics (STAT_NAMES) of an HWC uint8 RGB crop, with `gate`'s block size and skin rule
    (default the shipped gate's); definitions in the module docstring."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}")
    block, rule = _gate_rule(gate)
    nby, nbx = rgb.shape[0] // block, rgb.shape[1] // block
    if nby < 2 or nbx < 2:
        raise ValueError(f"image too small for the not-skin gate: {rgb.shape[1]}x{rgb.shape[0]} "
                         f"< {2 * block}x{2 * block}")
    h, w = nby * block, nbx * block
    a = rgb[:h, :w].astype(np.float64)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    # the 18 per-pixel terms, written in place (same operations, in the same order, as the docstring's
    # products evaluated left to right; shared left factors such as s*Y are computed once)
    p = np.empty((18, h, w))
    s_, u, v, m, scr, scb, scr2, scb2, sy, sy2, y, y2, sycr, sycb, gxx, gyy, gxy, hh = p
    np.add(np.add(0.299 * r, 0.587 * g), 0.114 * b, out=y)
    cr = 128.0 + 0.713 * (r - y)
    cb = 128.0 + 0.564 * (b - y)
    s_[...] = in_skin_box(cr, cb, rule)
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
    bs = _block_sums(p, nby, nbx, block)  # (planes, blocks)
    t = [float(x) for x in _seqsum(bs)]
    (t_s, t_u, t_v, t_m, t_cr, t_cb, t_cr2, t_cb2, t_y_s, t_y2_s, t_y, t_y2, t_ycr, t_ycb,
     t_gxx, t_gyy, t_gxy, t_h) = t
    n = float(h * w)
    area = float(block * block)
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
    f["skin_blocks"] = float(_seqsum((bs[0] >= area / 2).astype(np.float64))) / float(nby * nbx)
    f["texture_cv"] = _sd_over_mean(np.sqrt(b_e / area))
    f["chroma_mean"] = t_m / n
    mean_y = t_y / n
    f["luma_sd"] = math.sqrt(max(0.0, t_y2 / n - mean_y * mean_y))
    f["block_luma_cv"] = _sd_over_mean(bs[10] / area)
    f["luma_mean"] = mean_y
    return {name: float(f[name]) for name in STAT_NAMES}


def gate_score(features: dict[str, float], gate: dict[str, Any]) -> float:
    """The gate's logistic score (log-odds of "skin photo") for `features` under parameters `gate`."""
    roots = set(gate.get("sqrt_features", []))
    z = []
    for i, name in enumerate(gate["features"]):
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
    return {**default_ood(), "gate": default_gate(), **(ood or {})}


def validate_ood(ood: Any) -> None:
    """Raise ValueError (GateParameterError for the gate) naming the first bad field of an `ood` block."""
    if ood is None:
        return
    if not isinstance(ood, dict):
        raise ValueError(f"ood must be an object, got {type(ood).__name__}")
    for key in ("skin_fraction_min", "max_logit_min"):
        x = ood.get(key)
        if key in ood and not _number(x):
            raise ValueError(f"ood.{key} must be a finite number, got {x!r}")
    if "skin_fraction_min" in ood and not 0.0 <= ood["skin_fraction_min"] <= 1.0:
        raise ValueError(f"ood.skin_fraction_min must be in [0, 1], got {ood['skin_fraction_min']!r}")
    if "gate" in ood and ood["gate"] is not None:
        validate_gate(ood["gate"])
    validate_skin_check(ood.get("skin_check"))


def ood_check(rgb_crop: np.ndarray, logits: np.ndarray, thresholds: dict[str, Any] | None,
              skin_score: float | None = None) -> dict[str, Any]:
    """The `ood` block of a prediction: the statistics, the verdict `is_skin` (False: refuse), `answerable`
    (False: withhold the answer) and `reason` (a REASONS code, or None)."""
    # `skin_score`: the learned check's output (hypoderm.inference.skincheck; None: no check). A photo it passes is
    # never refused by the statistics (their refusal becomes a withheld answer); its own thresholds refuse or
    # withhold the rest. `thresholds["gate"] = None` switches the gate off (colour and max-logit floors remain).
    th = with_gate(thresholds)
    max_logit = float(np.max(logits))
    gate = th["gate"]
    if gate is not None:
        feats = gate_features(at_gate_size(rgb_crop, int(gate["size"])), gate)
        frac, luma = feats["skin_fraction"], feats["luma_mean"]
        score: float | None = gate_score(feats, gate)
    else:
        frac, luma, score = skin_fraction(rgb_crop), None, None
    check = th.get("skin_check") if skin_score is not None else None
    learned = skin_check_reason(skin_score, check)
    stats = None
    if gate is not None and score is not None and score < float(gate["threshold"]):
        stats = "not_skin_like" if check is None or learned is not None else "unsure_skin"
    elif gate is not None and score is not None and score < float(gate.get("answer_threshold", gate["threshold"])):
        stats = "unsure_skin"
    reason = None
    if gate is not None and luma is not None and luma < float(gate.get("luma_min", -1.0)):
        reason = "too_dark"
    elif frac < float(th["skin_fraction_min"]):
        reason = "little_skin"
    elif "not_skin_like" in (learned, stats):
        reason = "not_skin_like"
    elif "unsure_skin" in (learned, stats):
        reason = "unsure_skin"
    elif max_logit < float(th["max_logit_min"]):
        reason = "unusual_logits"
    return {"skin_fraction": frac, "gate_score": score, "skin_score": skin_score, "max_logit": max_logit,
            "luma_mean": luma, "is_skin": REASONS.get(reason or "") != "not_skin", "answerable": reason is None,
            "reason": reason}


def fit_ood_thresholds(max_logits: Sequence[float] | np.ndarray, quantile: float = 0.01,
                       skin_fraction_min: float | None = None) -> dict[str, Any]:
    """Thresholds from in-distribution validation images, with the default gate. `max_logits`: the max logit of each
    validation image (real skin photos). The max-logit floor is their `quantile` quantile, so about that share of
    real photos would have their answer withheld by it (it never refuses a photo). Fewer than 20 values give too
    noisy a quantile: the floor is then left permissive."""
    if not 0.0 <= quantile < 0.5:
        raise ValueError(f"quantile must be in [0, 0.5), got {quantile}")
    values = np.asarray(max_logits, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    floor = float(np.quantile(values, quantile)) if values.size >= 20 else PERMISSIVE_MAX_LOGIT_MIN
    if skin_fraction_min is None:
        skin_fraction_min = default_skin_fraction_min()
    return {"skin_fraction_min": float(skin_fraction_min), "max_logit_min": floor,
            "fitted_on": int(values.size), "quantile": float(quantile), "gate": default_gate()}
