"""Grad-CAM in numpy from the exported model's own outputs (torch-free): THE heat-map definition.

The ONNX model made by `hypoderm export` returns, next to the logits, the last feature map
`features` (N, C, h, w) and the Grad-CAM channel weights `cam_weights` (N, K, C), computed in the
graph from the head's analytic Jacobian (hypoderm.export.gradcam). The heat map of class k is then
pytorch-grad-cam's GradCAM on that layer, step by step: ReLU(sum_c w_kc A_c), min-max scaled,
bilinearly resized (cv2 INTER_LINEAR: half-pixel centres, clamped edges), scaled again.
`predict --cam`, `serve` and the browser (app/static/js/gradcam.js, the same steps) all use it, so
one photo gets one map. Overlays are drawn over the region the model saw, on the photo scaled down to at
most OVERLAY_MAX_SIDE pixels (never at a 40 MP photo's resolution).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from hypoderm.inference.preprocess import PreprocessSpec, resized_size

# The longer side of the overlay picture `serve` returns and `predict --cam` writes, at most (the page shows it
# at phone-screen size; the browser draws its own map at the framed square's resolution).
OVERLAY_MAX_SIDE = 512


def _scale01(x: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's scale_cam_image without resizing: x - min, divided by (max + 1e-7)."""
    x = x - x.min()
    return x / (1e-7 + x.max())


def resize_bilinear(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """2-D bilinear resize with half-pixel centres and clamped edges (OpenCV's INTER_LINEAR for float)."""
    a = np.asarray(a, dtype=np.float64)
    in_h, in_w = a.shape

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    y0, y1, wy = axis(in_h, out_h)
    x0, x1, wx = axis(in_w, out_w)
    top = a[y0][:, x0] * (1 - wx) + a[y0][:, x1] * wx
    bottom = a[y1][:, x0] * (1 - wx) + a[y1][:, x1] * wx
    return top * (1 - wy)[:, None] + bottom * wy[:, None]


def gradcam_map(features: np.ndarray, weights: np.ndarray, class_index: int, out_h: int, out_w: int) -> np.ndarray:
    """Grad-CAM of `class_index` in [0, 1] at (out_h, out_w) from one image's `features` (C, h, w)
    and `cam_weights` (K, C)."""
    features = np.asarray(features, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if features.ndim != 3 or weights.ndim != 2 or weights.shape[1] != features.shape[0]:
        raise ValueError(f"expected features (C,h,w) and weights (K,C), got {features.shape} and {weights.shape}")
    if not 0 <= class_index < weights.shape[0]:
        raise ValueError(f"class_index {class_index} out of range for {weights.shape[0]} classes")
    cam = np.maximum(np.tensordot(weights[class_index], features, axes=1), 0)
    cam = resize_bilinear(_scale01(cam), out_h, out_w)
    return _scale01(np.maximum(cam, 0))


def jet(x: np.ndarray) -> np.ndarray:
    """The 'jet' colour map (blue -> red) of values in [0, 1], uint8 RGB."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0, 1)
    rgb = np.stack([np.clip(1.5 - np.abs(4 * x - c), 0, 1) for c in (3, 2, 1)], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def crop_box(width: int, height: int, spec: PreprocessSpec, framed: bool = False) -> tuple[float, float, float, float]:
    """(left, top, box width, box height) in photo pixels of the square the model saw: the centre square of the
    photo resized to `spec.resize_size` on its shorter side (hypoderm.inference.preprocess.square_uint8), all of a
    square photo. `framed` changes nothing since issue 29 (one rule for framed squares and whole photos)."""
    rw, rh = resized_size(width, height, spec.resize_size)
    side = min(rw, rh)
    left, top = round((rw - side) / 2.0), round((rh - side) / 2.0)
    sx, sy = width / rw, height / rh
    return left * sx, top * sy, side * sx, side * sy


def overlay_on_photo(img: Image.Image, features: np.ndarray, weights: np.ndarray, class_index: int,
                     spec: PreprocessSpec, alpha: float = 0.5, framed: bool = False,
                     max_side: int | None = OVERLAY_MAX_SIDE) -> Image.Image:
    """The photo, scaled down to at most `max_side` pixels on its longer side (None: its own resolution), with
    the heat map blended over the region the model saw; the rest of the photo is dimmed (the model did not
    see it; nothing is, for a `framed` square). The map only has the model's resolution (a few cells per side),
    so a larger picture would show nothing more and cost memory and time in proportion to the photo (a 40 MP
    PNG took 2.7 GB and 25 s)."""
    width, height = img.size
    left, top, bw, bh = crop_box(width, height, spec, framed)
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        img = img.convert("RGB").resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        sx, sy = size[0] / width, size[1] / height
        left, top, bw, bh = left * sx, top * sy, bw * sx, bh * sy
    photo = np.asarray(img.convert("RGB"), dtype=np.float32)
    h, w = photo.shape[:2]
    x0, y0 = int(round(left)), int(round(top))
    x1, y1 = min(w, int(round(left + bw))), min(h, int(round(top + bh)))
    out = photo * np.float32(0.45)
    heat = jet(gradcam_map(features, weights, class_index, y1 - y0, x1 - x0)).astype(np.float32)
    out[y0:y1, x0:x1] = np.float32(1 - alpha) * photo[y0:y1, x0:x1] + np.float32(alpha) * heat
    return Image.fromarray(np.clip(out, 0, 255).round().astype(np.uint8), "RGB")
