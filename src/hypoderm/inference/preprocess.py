"""The one preprocessing definition (the "square rule", since issue 29).

Every entry point follows it, so the same pixels give the same answer: the page (`static/js/preprocess.js`
is a bit-exact port), the API (framed upload or not), `hypoderm predict`, the exporter's checks, and
training-time evaluation and calibration (`engine/data.eval_transform` applies `square_from_resized` to the
decoded cache, which holds `resized_uint8`):

1. The square: the one a person framed in the app, cut from the photo at its own resolution; anywhere else
   (a whole photo given to `predict`, the API or `evaluate`) the photo's centre square, taken in step 3.
2. Large images are first box-reduced (Pillow's `reduce`) by the whole factor `reduce_factor(shorter side)`
   = shorter side // `decode_min_size(spec)` (nothing below 2 x that), exactly what the loader does when
   `predict` and `serve` decode with `min_size` (hypoderm.imaging.io), so an image reduced there is not
   reduced again. The page reduces its framed square the same way, strip by strip (static/js/crop.js).
3. Resize the shorter side to `resize_size` (Pillow bilinear, antialiased, `reducing_gap=None`), take the
   centre square of that (`resize_size` x `resize_size`, torchvision's CenterCrop rounding), and resize it
   straight to `size` x `size` (same filter). The model sees all of the square: no further crop.
4. /255, (x - mean) / std, CHW float32. The uint8 `size` x `size` square of step 3 is also what the
   not-skin check scores (hypoderm.inference.ood).

Metadata: the `input` block carries `"crop": "square"`; a block without `crop` (exports before issue 29)
follows the same rule (models trained before it saw the centre 87.5 % crop at evaluation, the page already
saw the whole square); any other value is refused at load. The one difference left between entry points is
the decoder's: a JPEG read by `predict` or the API with `min_size` may be decoded at reduced DCT scale
(DRAFT_REDUCING_GAP below), which the browser's decoder cannot mirror; the page's server mode uploads its
square as PNG, so the API sees the page's pixels exactly.

Torch-free on purpose: ONNX inference imports only numpy and Pillow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from hypoderm.imaging.io import check_aspect_ratio

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_RATIO = 0.875  # size / resize_size by default (torchvision's classic 224 / 256); resize_size is the rule's
# first resize (and the decoded cache's size), whose centre square the model sees whole since issue 29
CROP_RULE = "square"  # the `input.crop` field: the only rule there is (absent in exports before issue 29)
RESIZE_RULE = ("square: the framed square (or the photo's centre square); box-reduce by shorter side // (2 x "
               "resize_size) when that is >= 2; resize shorter side to resize_size (bilinear, antialiased); centre "
               "square; resize to size x size (same filter); /255, (x - mean) / std, NCHW float32")


def _rgb_triple(values: Any) -> tuple[float, float, float]:
    """One number per channel (R, G, B); ValueError unless there are exactly three."""
    r, g, b = (float(x) for x in values)
    return r, g, b


@dataclass(frozen=True)
class PreprocessSpec:
    """How a photo becomes the model's input tensor."""

    size: int = 224
    resize_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
    crop: str = CROP_RULE

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"input size must be at least 16 px, got {self.size}")
        if self.resize_size < self.size:
            raise ValueError(f"resize_size ({self.resize_size}) must be >= size ({self.size})")
        if self.interpolation != "bilinear":
            raise ValueError(f"only bilinear interpolation is supported, got {self.interpolation!r}")
        if self.crop != CROP_RULE:
            raise ValueError(f"crop must be {CROP_RULE!r} (the one preprocessing rule), got {self.crop!r}")

    @classmethod
    def for_size(cls, size: int) -> PreprocessSpec:
        return cls(size=size, resize_size=int(round(size / CROP_RATIO)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["rule"] = RESIZE_RULE
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        return cls(size=int(d["size"]), resize_size=int(d["resize_size"]),
                   mean=_rgb_triple(d["mean"]), std=_rgb_triple(d["std"]),
                   interpolation=d.get("interpolation", "bilinear"), crop=d.get("crop", CROP_RULE))


# A large JPEG may be decoded at reduced DCT scale (hypoderm.imaging.io, `min_size`) before the resize
# above, but to a shorter side of at least DRAFT_REDUCING_GAP x resize_size, not just resize_size
# (the idea of Pillow's `reducing_gap`): the spec's antialiased bilinear resize then still sees
# several source pixels per output pixel. On the 311 development photos upscaled to 12 MP, the
# bundled model's probabilities moved by p99 0.10 / max 0.17 (3 top-1 changes) with a gap of 1 and
# p99 0.054 / max 0.12 (no top-1 change) with 2, for ~3 ms more per photo (benchmarks/robustness/; measured with
# the centre-crop rule before issue 29: tests/test_robustness.py records the square rule's means).
DRAFT_REDUCING_GAP: float = 2.0


def decode_min_size(spec: PreprocessSpec) -> int:
    """The shorter side a reduced-scale JPEG decode must keep for this spec (see DRAFT_REDUCING_GAP), and the
    unit of the rule's box reduction (`reduce_factor`)."""
    return int(round(DRAFT_REDUCING_GAP * spec.resize_size))


def resized_size(w: int, h: int, resize_size: int) -> tuple[int, int]:
    """The size resize_shorter gives: shorter side -> resize_size, the other by round() (unchanged when the shorter
    side already is resize_size; static/js/preprocess.js resizedSize)."""
    if min(w, h) == resize_size:
        return w, h
    if w <= h:
        return resize_size, max(1, int(round(h * resize_size / w)))
    return max(1, int(round(w * resize_size / h))), resize_size


def resize_shorter(img: Image.Image, resize_size: int) -> Image.Image:
    w, h = img.size
    check_aspect_ratio(w, h)  # before the resize allocates anything
    new_w, new_h = resized_size(w, h, resize_size)
    if (new_w, new_h) == (w, h):
        return img
    return img.resize((new_w, new_h), Image.Resampling.BILINEAR, reducing_gap=None)


def center_crop_array(arr: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an HWC array (same rounding as torchvision's CenterCrop)."""
    h, w = arr.shape[:2]
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return arr[top: top + size, left: left + size]


def normalize_uint8(arr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """HWC uint8 RGB -> CHW float32 normalised."""
    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    x = (arr.astype(np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def reduce_factor(shorter_side: int, spec: PreprocessSpec) -> int:
    """Step 2 of the rule: the whole factor an image (or framed square) with this shorter side is box-reduced by
    (1: not reduced); the loader's with `min_size=decode_min_size(spec)` (static/js/preprocess.js reduceFactor)."""
    return max(1, int(shorter_side) // decode_min_size(spec))


def reduced(img: Image.Image, spec: PreprocessSpec) -> Image.Image:
    """Step 2: RGB, box-reduced by `reduce_factor` (Pillow's `reduce`, boxes from the top-left corner; the last
    row and column average what is left). A no-op on what the loader already reduced."""
    w, h = img.size
    check_aspect_ratio(w, h)  # before anything is allocated
    rgb = img.convert("RGB")
    factor = reduce_factor(min(w, h), spec)
    return rgb.reduce(factor) if factor > 1 else rgb


def resized_uint8(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """The decoded-cache form (steps 2 and the first resize of 3): RGB, reduced, shorter side = resize_size, HWC
    uint8."""
    return np.asarray(resize_shorter(reduced(img, spec), spec.resize_size), dtype=np.uint8)


def square_from_resized(arr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The rest of step 3 on the cached form (`resized_uint8`): its centre square resized straight to `size` x
    `size`, HWC uint8: what the model sees and the not-skin check scores (engine/data.eval_transform uses it)."""
    side = min(arr.shape[:2])
    square = np.ascontiguousarray(center_crop_array(arr, side))
    if side == spec.size:
        return square
    out = Image.fromarray(square, "RGB").resize((spec.size, spec.size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(out, dtype=np.uint8)


def square_uint8(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Steps 2-3 of the rule for any image (a framed square or a whole photo): `size` x `size` HWC uint8."""
    return square_from_resized(resized_uint8(img, spec), spec)


def preprocess(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """PIL image -> model input, CHW float32 (add the batch axis yourself): the square rule, steps 2-4."""
    return normalize_uint8(square_uint8(img, spec), spec)
