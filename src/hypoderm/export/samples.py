"""Real-looking synthetic skin photos (numpy + Pillow) for the export parity check.

Used when no calibration folder is given: skin-toned backgrounds from light to dark, an
illumination gradient, pale depigmented patches, sensor noise and varied sizes/aspect ratios,
so the check exercises the real resize/crop path and realistic logits, not a zero tensor.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

# sRGB skin tones, light to dark (Fitzpatrick I..VI, roughly)
SKIN_TONES = ((241, 194, 167), (224, 172, 140), (198, 134, 96), (161, 102, 69), (120, 80, 60), (84, 55, 42))
SIZES = ((320, 240), (240, 320), (256, 256), (500, 375), (180, 260), (97, 130))


def synthetic_skin_image(rng: np.random.Generator, size: tuple[int, int] = (256, 256)) -> Image.Image:
    """One synthetic skin photo of `size` (width, height)."""
    w, h = size
    tone = np.asarray(SKIN_TONES[rng.integers(len(SKIN_TONES))], np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    light = 0.85 + 0.3 * (xx / max(w - 1, 1)) * rng.uniform(0.3, 1.0) - 0.15 * (yy / max(h - 1, 1))
    img = tone[None, None, :] * light[..., None]
    for _ in range(int(rng.integers(1, 4))):  # depigmented patches blend towards near-white
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.08, 0.3) * w, rng.uniform(0.08, 0.3) * h
        patch = np.clip(1.2 - ((xx - cx) / rx) ** 2 - ((yy - cy) / ry) ** 2, 0, 1)[..., None]
        img = img * (1 - 0.8 * patch) + np.asarray([238, 226, 216], np.float64) * 0.8 * patch
    img = img + rng.normal(0, 6, img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    return out.filter(ImageFilter.GaussianBlur(0.6))


def synthetic_skin_images(n: int = 6, seed: int = 0) -> list[Image.Image]:
    """`n` synthetic skin photos, cycling through varied sizes."""
    rng = np.random.default_rng(seed)
    return [synthetic_skin_image(rng, SIZES[i % len(SIZES)]) for i in range(n)]
