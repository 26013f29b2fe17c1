"""A style-shift test set built from a dataset's own test-fold photos.

Internal cross-validation cannot see a photo-style shortcut: the test fold has the same styles as the
training folds. These views of the same test photos take the style away, so a model that learned the
style instead of the skin loses its score on them while one that judges the skin keeps it:

- `closeup`: square close-ups (30-50% of the shorter side) centred on skin-coloured pixels, like the
  square a user frames in the app: no background, framing or photo size.
- `closeup_tone`: the same close-ups with the skin tone moved to a random CIELAB target drawn from one
  distribution for every class (`hypoderm.engine.augment.ToneShift`, seeded): skin tone no longer
  tells the classes apart either.
- `masked`: the whole photo (the usual centre crop) with everything outside the skin region (skin
  pixels, closed and hole-filled so that a depigmented patch inside the skin stays) set to mid grey.

Every view is seeded by the photo's relative path, so it is the same for every model and run.
`hypoderm.data.shortcut`'s trivial photo-feature baseline is scored on the same views
(benchmarks/shortcut/), to show that the views really remove the style cues.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

from hypoderm.engine.augment import ToneShift, skin_or_pale_mask, square_crop
from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array

VIEWS = ("closeup", "closeup_tone", "masked")
CROPS_PER_PHOTO = 3
CLOSEUP_SCALE = (0.3, 0.5)


def _seed(key: str, view: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{view}|{key}".encode()).digest()[:8], "little")


def closeups(img: torch.Tensor, size: int, key: str, n: int = CROPS_PER_PHOTO,
             scale: tuple[float, float] = CLOSEUP_SCALE) -> list[torch.Tensor]:
    """`n` square close-ups of a CHW uint8 image centred on skin, resized to `size` (seeded by `key`)."""
    g = torch.Generator().manual_seed(_seed(key, "closeup"))
    _, h, w = img.shape
    ys, xs = torch.nonzero(skin_or_pale_mask(img, grow=0), as_tuple=True)
    out = []
    for _ in range(n):
        side = int(round(min(h, w) * (scale[0] + (scale[1] - scale[0]) * float(torch.rand(1, generator=g)))))
        if len(ys):
            k = int(torch.randint(len(ys), (1,), generator=g))
            cy, cx = float(ys[k]), float(xs[k])
        else:
            cy, cx = h / 2, w / 2
        out.append(v2.functional.resize(square_crop(img, cy, cx, side), [size, size], antialias=True))
    return out


def tone_randomised(crops: Sequence[torch.Tensor], key: str) -> list[torch.Tensor]:
    """Each crop with its skin tone moved to a random target (same distribution for every class)."""
    shift = ToneShift(p=1.0)
    out = []
    state = torch.random.get_rng_state()
    try:
        for i, c in enumerate(crops):
            torch.manual_seed(_seed(f"{key}|{i}", "tone"))
            out.append(shift(c))
    finally:
        torch.random.set_rng_state(state)
    return out


def masked_background(img: torch.Tensor, size: int, grey: int = 128) -> torch.Tensor:
    """The centre crop of a CHW uint8 image with everything outside the (closed, hole-filled) skin region grey."""
    from scipy import ndimage

    arr = img.permute(1, 2, 0).numpy()
    skin = skin_or_pale_mask(img, grow=0).numpy()
    skin = ndimage.binary_closing(skin, iterations=3)
    skin = ndimage.binary_fill_holes(skin)
    skin = ndimage.binary_opening(skin, iterations=2)
    out = np.where(skin[..., None], arr, np.uint8(grey)).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(center_crop_array(out, size))).permute(2, 0, 1)


def _view_images(view: str, img: torch.Tensor, key: str, crops: list[torch.Tensor], size: int) -> list[torch.Tensor]:
    """The images of one style-shift view for one photo (`crops`: its close-ups, when a close-up view is asked)."""
    if view == "closeup":
        return crops
    if view == "closeup_tone":
        return tone_randomised(crops, key)
    return [masked_background(img, size)]


def build_views(images: Sequence[torch.Tensor], keys: Sequence[str], spec: PreprocessSpec,
                views: Sequence[str] = VIEWS) -> dict[str, tuple[list[torch.Tensor], np.ndarray]]:
    """{view: (CHW uint8 images at spec.size, index of the source photo for each)} for cached images."""
    unknown = sorted(set(views) - set(VIEWS))
    if unknown:
        raise ValueError(f"unknown style-shift view(s) {unknown}; choose from {', '.join(VIEWS)}")
    out: dict[str, tuple[list[torch.Tensor], list[int]]] = {v: ([], []) for v in views}
    for i, (img, key) in enumerate(zip(images, keys, strict=True)):
        crops = closeups(img, spec.size, key) if {"closeup", "closeup_tone"} & set(views) else []
        for v in views:
            made = _view_images(v, img, key, crops, spec.size)
            out[v][0].extend(made)
            out[v][1].extend([i] * len(made))
    return {v: (ims, np.asarray(src, dtype=np.int64)) for v, (ims, src) in out.items()}


def view_metrics(probs: np.ndarray, y: np.ndarray, threshold: float) -> dict[str, Any]:
    """ROC-AUC, macro-F1 and accuracy of the top class, and the share answered (top p >= threshold)."""
    from hypoderm.metrics import binary_auc, macro_f1, roc_auc_ovr

    k = probs.shape[1]
    pred = probs.argmax(1)
    auc = binary_auc(y == 1, probs[:, 1]) if k == 2 else roc_auc_ovr(y, probs, k)[0]
    answered = probs.max(1) >= threshold
    return {"n": int(len(y)), "roc_auc": auc, "accuracy": float((pred == y).mean()),
            "macro_f1": macro_f1(y, pred, k),
            "answered": float(answered.mean()),
            "answered_accuracy": float((pred[answered] == y[answered]).mean()) if answered.any() else float("nan"),
            "per_class_recall": [float((pred[y == c] == c).mean()) if (y == c).any() else float("nan")
                                 for c in range(k)]}


def evaluate_views(predict: Callable[[torch.Tensor], np.ndarray], images: Sequence[torch.Tensor],
                   labels: Sequence[int], keys: Sequence[str], spec: PreprocessSpec, threshold: float,
                   views: Sequence[str] = VIEWS, batch_size: int = 64) -> dict[str, dict[str, Any]]:
    """Metrics of `predict` (float batch NCHW normalised -> probabilities) on every style-shift view."""
    norm = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(spec.mean), list(spec.std))])
    y_photo = np.asarray(labels, dtype=np.int64)
    out = {}
    for view, (ims, src) in build_views(images, keys, spec, views).items():
        probs = np.concatenate([predict(torch.stack([norm(x) for x in ims[s: s + batch_size]]))
                                for s in range(0, len(ims), batch_size)])
        out[view] = {**view_metrics(probs, y_photo[src], threshold), "probs": probs, "source": src}
    return out
