"""The one preprocessing definition.

Training (eval transform and the decoded cache), export metadata, Python inference and the
browser app all follow this spec, so they cannot drift: resize the shorter side to
`resize_size` (PIL, bilinear, antialiased), centre-crop `size` x `size`, scale to [0, 1],
normalise with `mean`/`std`, lay out as CHW float32.

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
CROP_RATIO = 0.875  # torchvision's classic 224 / 256
RESIZE_RULE = ("resize shorter side to resize_size (bilinear, antialiased), centre-crop size x size, /255, "
               "(x - mean) / std, NCHW float32")


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

    def __post_init__(self) -> None:
        if self.size < 16:
            raise ValueError(f"input size must be at least 16 px, got {self.size}")
        if self.resize_size < self.size:
            raise ValueError(f"resize_size ({self.resize_size}) must be >= size ({self.size})")
        if self.interpolation != "bilinear":
            raise ValueError(f"only bilinear interpolation is supported, got {self.interpolation!r}")

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
                   interpolation=d.get("interpolation", "bilinear"))


# A large JPEG may be decoded at reduced DCT scale (hypoderm.imaging.io, `min_size`) before the resize
# above, but to a shorter side of at least DRAFT_REDUCING_GAP x resize_size, not just resize_size
# (the idea of Pillow's `reducing_gap`): the spec's antialiased bilinear resize then still sees
# several source pixels per output pixel. On the 311 development photos upscaled to 12 MP, the
# bundled model's probabilities moved by p99 0.10 / max 0.17 (3 top-1 changes) with a gap of 1 and
# p99 0.054 / max 0.12 (no top-1 change) with 2, for ~3 ms more per photo (benchmarks/robustness/).
DRAFT_REDUCING_GAP: float = 2.0


def decode_min_size(spec: PreprocessSpec) -> int:
    """The shorter side a reduced-scale JPEG decode must keep for this spec (see DRAFT_REDUCING_GAP)."""
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


def resized_uint8(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """The decoded-cache form: RGB, shorter side = resize_size, HWC uint8."""
    return np.asarray(resize_shorter(img.convert("RGB"), spec.resize_size), dtype=np.uint8)


def framed_uint8(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """The square a person framed in the app, as the model sees it: the whole square resized straight to
    `size` x `size` (no centre crop, so "only the square is analysed" is exactly true), HWC uint8. A
    non-square image is first cut to its largest centred square (integer box, like the app's cropper)."""
    w, h = img.size
    check_aspect_ratio(w, h)
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    square = img.convert("RGB")
    if (w, h) != (side, side):
        square = square.crop((left, top, left + side, top + side))
    if side != spec.size:
        square = square.resize((spec.size, spec.size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(square, dtype=np.uint8)


def preprocess(img: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """PIL image -> model input, CHW float32 (add the batch axis yourself)."""
    return normalize_uint8(center_crop_array(resized_uint8(img, spec), spec.size), spec)
