"""Augmentations against the photo-style shortcut, on CHW uint8 tensors.

On the development photos a logistic regression on trivial photo features (size, framing, border
colour, skin tone, JPEG bytes) predicts the label better than the CNN did: the classes come from
different photo styles (studio portraits of light skin vs. body shots of darker skin). These
transforms take those cues away while keeping the one signal that matters, the loss of pigment of a
patch relative to the skin around it:

- `SkinGuidedCrop`: a square close-up (a share of the shorter side drawn from `scale`) centred on a
  skin-coloured pixel,
  like the square a user frames in the app. It removes background, framing and photo size; the skin
  rule is `hypoderm.imaging.colour`'s YCrCb rule.
- `ToneShift`: moves the crop's skin tone in CIELAB to a random target (same target distribution for
  every class), so skin tone (ITA) stops predicting the class. A global shift keeps the lightness
  difference between a patch and the surrounding skin, which is the diagnostic contrast.
- `Degrade`: random JPEG re-compression and down/up-sampling, so compression and resolution (all the
  smallest photos are vitiligo) stop predicting the class.

Recipes combine them (`hypoderm.engine.config.RECIPES`); the default, `crop-tone`, was chosen by
measurement: benchmarks/shortcut/README.md.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from hypoderm.errors import UsageError
from hypoderm.imaging import colour


def _hwc(img: torch.Tensor) -> np.ndarray:
    """CHW uint8 tensor -> HWC uint8 array (a view where possible), for hypoderm.imaging.colour."""
    return img.permute(1, 2, 0).numpy()


def to_lab(img: torch.Tensor) -> torch.Tensor:
    """CHW uint8 RGB -> CHW float32 CIELAB (hypoderm.imaging.colour.rgb_to_lab)."""
    return torch.from_numpy(colour.rgb_to_lab(_hwc(img)).astype(np.float32)).permute(2, 0, 1)


def from_lab(lab: torch.Tensor) -> torch.Tensor:
    """CHW CIELAB -> CHW uint8 RGB (hypoderm.imaging.colour.lab_to_rgb: clipped, rounded)."""
    return torch.from_numpy(colour.lab_to_rgb(lab.permute(1, 2, 0).double().numpy())).permute(2, 0, 1).contiguous()


def skin_or_pale_mask(img: torch.Tensor, grow: int = 7) -> torch.Tensor:
    """HW bool: skin-coloured pixels (the YCrCb rule of `hypoderm.imaging.colour`) and pale pixels within `grow` px
    of them.

    `img` is CHW uint8 RGB. A depigmented patch is near-neutral and fails the skin rule; growing the
    mask keeps such a patch (and its border, where the diagnosis is) among the crop centres.
    """
    y, cr, cb = colour.ycc(_hwc(img))
    skin = torch.from_numpy(colour.in_skin_box(cr, cb))
    if grow > 0 and skin.any():
        near = F.max_pool2d(skin[None, None].float(), 2 * grow + 1, stride=1, padding=grow)[0, 0] > 0
        pale = torch.from_numpy((y > 150) & (np.abs(cr - 128) < 20) & (np.abs(cb - 128) < 20))
        skin = skin | (near & pale)
    return skin


def square_crop(img: torch.Tensor, cy: float, cx: float, side: int) -> torch.Tensor:
    """The `side` x `side` square centred near (cy, cx), shifted to lie inside the image."""
    _, h, w = img.shape
    side = max(1, min(side, h, w))
    top = int(round(min(max(cy - side / 2, 0), h - side)))
    left = int(round(min(max(cx - side / 2, 0), w - side)))
    return img[:, top: top + side, left: left + side]


class SkinGuidedCrop(torch.nn.Module):
    """Random square close-up centred on skin, resized to `size` (see the module docstring)."""

    def __init__(self, size: int, scale: tuple[float, float] = (0.25, 1.0), p_skin: float = 0.9) -> None:
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        self.size, self.scale, self.p_skin = size, scale, p_skin

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        _, h, w = img.shape
        short = min(h, w)
        side = int(round(short * float(torch.empty(1).uniform_(*self.scale))))
        cy, cx = float(torch.rand(1)) * h, float(torch.rand(1)) * w
        if float(torch.rand(1)) < self.p_skin:
            # the mask on a 4x smaller image is enough to pick a centre, and 16x cheaper
            small = img[:, ::4, ::4]
            # centres on skin only: a lesion lies within skin, so a crop around skin holds it, while
            # "pale next to skin" would also pick the white blankets of the normal-skin baby photos
            ys, xs = torch.nonzero(skin_or_pale_mask(small, grow=0), as_tuple=True)
            if len(ys):
                k = int(torch.randint(len(ys), (1,)))
                cy, cx = float(ys[k]) * 4 + 2, float(xs[k]) * 4 + 2
        crop = square_crop(img, cy, cx, side)
        return v2.functional.resize(crop, [self.size, self.size], antialias=True)


class ToneShift(torch.nn.Module):
    """Move the skin tone of a CHW uint8 image to a random target in CIELAB.

    The mean L* and b* of the skin-coloured pixels (all pixels when too few are skin-coloured) are
    moved to targets drawn uniformly from `lightness` and `yellowness`; a* is scaled by a factor from
    `a_scale`. Every pixel gets the same offsets, so a depigmented patch keeps its lightness
    difference to the skin around it, while the skin tone (ITA = atan((L*-50)/b*)) becomes the same
    distribution for every class: tone can no longer predict the label.
    """

    def __init__(self, p: float = 0.8, lightness: tuple[float, float] = (35.0, 80.0),
                 yellowness: tuple[float, float] = (8.0, 24.0), a_scale: tuple[float, float] = (0.8, 1.2)) -> None:
        super().__init__()
        self.p, self.lightness, self.yellowness, self.a_scale = p, lightness, yellowness, a_scale

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(1)) >= self.p:
            return img
        lab = to_lab(img)
        skin = skin_or_pale_mask(img, grow=0)
        ref = lab[:, skin] if skin.float().mean() >= 0.05 else lab.flatten(1)
        u = torch.rand(3)
        target_l = self.lightness[0] + (self.lightness[1] - self.lightness[0]) * u[0]
        target_b = self.yellowness[0] + (self.yellowness[1] - self.yellowness[0]) * u[1]
        lab[0] = lab[0] + (target_l - ref[0].mean())
        lab[1] = lab[1] * (self.a_scale[0] + (self.a_scale[1] - self.a_scale[0]) * u[2])
        lab[2] = lab[2] + (target_b - ref[2].mean())
        return from_lab(lab)


class Degrade(torch.nn.Module):
    """With probability `p`: down-sample by a random factor and back, then JPEG at a random quality."""

    def __init__(self, p: float = 0.5, min_scale: float = 0.35, quality: tuple[int, int] = (30, 95)) -> None:
        super().__init__()
        self.p, self.min_scale, self.quality = p, min_scale, quality

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if float(torch.rand(1)) >= self.p:
            return img
        _, h, w = img.shape
        s = float(torch.empty(1).uniform_(self.min_scale, 1.0))
        if s < 0.95:
            small = v2.functional.resize(img, [max(8, math.floor(h * s)), max(8, math.floor(w * s))], antialias=True)
            img = v2.functional.resize(small, [h, w], antialias=True)
        return jpeg_roundtrip(img, int(torch.randint(self.quality[0], self.quality[1] + 1, (1,))))


def jpeg_roundtrip(img: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode a CHW uint8 image as JPEG at `quality` with Pillow and decode it again."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1).contiguous()


# ------------------------------------------------------------------------------- counterfactuals
def pale_mask(img: torch.Tensor, skin: torch.Tensor, margin: float = 12.0) -> torch.Tensor:
    """HW bool: pixels much lighter (L* > skin median + `margin`) and less coloured than the skin."""
    lab = to_lab(img)
    ref = lab[:, skin] if skin.any() else lab.flatten(1)
    l_med = ref[0].median()
    chroma = torch.hypot(lab[1], lab[2])
    return (lab[0] > l_med + margin) & (chroma < torch.hypot(ref[1], ref[2]).median())


def paint_depigmented_patch(img: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
    """Paint one to three synthetic depigmented macules on the skin of a CHW uint8 image.

    Irregular blobs (thresholded smooth noise around a skin pixel), 3-25% of the image each, made
    lighter (L* + 12..35, at most 97) and paler (a*, b* x 0.15..0.5) with a 1-2 px soft edge: the look
    of a vitiligo macule (sharply bordered, milky white), without the photo's style changing.
    """
    _, h, w = img.shape
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731 - a local shorthand
    skin = skin_or_pale_mask(img, grow=0)
    lab = to_lab(img)
    ref_l = lab[0, skin].median() if skin.float().mean() > 0.05 else lab[0].median()
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    ys, xs = torch.nonzero(skin, as_tuple=True)
    alpha = torch.zeros(h, w)
    for _ in range(1 + int(rand(1) * 3)):
        if len(ys):
            k = int(rand(1) * len(ys))
            cy, cx = float(ys[k]), float(xs[k])
        else:
            cy, cx = float(rand(1)) * h, float(rand(1)) * w
        radius = float(0.1 + 0.18 * rand(1)) * min(h, w)
        coarse = F.interpolate(rand(1, 1, 5, 5), size=(h, w), mode="bicubic", align_corners=False)[0, 0]
        fine = F.interpolate(rand(1, 1, 16, 16), size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        dist = torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / radius
        blob = ((1.0 - dist) + 1.0 * (coarse - 0.5) + 0.35 * (fine - 0.5)) > 0.0  # irregular, geographic border
        alpha = torch.maximum(alpha, blob.float())
    if skin.float().mean() > 0.2:
        alpha = alpha * skin.float()
    soft = 1 + int(rand(1) * 2)
    alpha = F.avg_pool2d(alpha[None, None], 2 * soft + 1, stride=1, padding=soft, count_include_pad=False)[0, 0]
    target_l = torch.clamp(ref_l + 12 + 23 * rand(1), max=97.0)
    keep = float(0.15 + 0.35 * rand(1))
    painted = torch.stack([lab[0] + (target_l - lab[0]).clamp_min(0) * 0.9 + 2 * (rand(h, w) - 0.5),
                           lab[1] * keep, lab[2] * keep])
    lab = lab * (1 - alpha) + painted * alpha
    return from_lab(lab)


def is_lesion_free(img: torch.Tensor, min_skin: float = 0.9, max_pale: float = 0.005,
                   max_lightness_spread: float = 14.0, max_redness_spread: float = 10.0) -> bool:
    """A close-up that is nearly all skin-coloured, evenly toned (L* 5th-95th percentile spread at most
    `max_lightness_spread`: a mottled crop of many small macules, or a dark nevus, is not even), evenly
    red (a* spread at most `max_redness_spread`: a pink carcinoma or keratosis is as light as the skin
    around it but redder) and has no pale pixels. On 150 PAD-UFES-20 photos (resized to 146 px) it called
    2 of 150 centre crops (60 px, where the lesion is) lesion-free, and 37% of the 45 px corner crops."""
    skin = skin_or_pale_mask(img, grow=0)
    if float(skin.float().mean()) < min_skin:
        return False
    lab = to_lab(img[:, ::2, ::2].contiguous())  # every other pixel: the same spreads, 4x cheaper
    for channel, limit in ((0, max_lightness_spread), (1, max_redness_spread)):
        values = lab[channel].flatten()
        if float(torch.quantile(values, 0.95) - torch.quantile(values, 0.05)) > limit:
            return False
    return float(pale_mask(img, skin).float().mean()) <= max_pale


class Counterfactual:
    """Label-changing augmentation that breaks the link between photo style and class.

    On a training crop (after `SkinGuidedCrop`):
    - a crop of any other class that shows no lesion (`is_lesion_free`: nearly all skin, evenly toned
      and red, no pale pixels) becomes class `normal`: a lesion source's photo style (the vitiligo
      scrape, the clinic's phone close-ups) can then be either class, and the label noise of
      lesion-free close-ups called "vitiligo" or "other lesion" goes away;
    - then, with probability `p`, a crop of class `normal` (relabelled ones included: healthy skin from
      the lesion sources' body sites) gets a synthetic depigmented macule (`paint_depigmented_patch`)
      and becomes class `lesion`: a normal-skin photo style (any source of healthy skin: portraits,
      abdomens, hands) can then be either class, decided by the patch alone.
    For data with a normal-skin class and a depigmented-lesion class (the bundled model's).
    """

    def __init__(self, normal: int, lesion: int, p: float = 0.3) -> None:
        if normal == lesion:
            raise UsageError("the normal and the lesion class must differ")
        self.normal, self.lesion, self.p = normal, lesion, p

    def __call__(self, img: torch.Tensor, label: int) -> tuple[torch.Tensor, int]:
        if label != self.normal and is_lesion_free(img):
            label = self.normal  # always: a close-up without a lesion is not a lesion
        if label == self.normal and float(torch.rand(1)) < self.p:
            return paint_depigmented_patch(img), self.lesion
        return img, label
