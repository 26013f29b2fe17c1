"""Outlier exposure (Hendrycks, Mazeika & Dietterich, ICLR 2019): pictures that are not skin, shown during
training with a uniform target, so that the model is unsure, not confidently "normal skin", on a picture the
not-skin gate lets through.

The bank: synthetic pictures of `hypoderm.data.nonskin` (its FIT ranges, 8 families) and random crops of the
real sample photos that ship inside installed Python packages (`nonskin.sample_photos`), each resized like a
training photo (shorter side = the preprocessing's resize size). Drawing the synthetic pictures takes about a
tenth of a second each, so the bank is cached as one .npy file per setting in the training cache folder.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hypoderm.inference.preprocess import PreprocessSpec, center_crop_array, resized_uint8

FIRST_SEED = 500_000  # seeds of the bank's synthetic pictures: apart from the gate's FIT (100000+) and TEST (0+)
CROPS_PER_PHOTO = 8
_BANKS: dict[str, list[torch.Tensor]] = {}  # built once per process: every fold of a cv, every model of a study


def build_bank(spec: PreprocessSpec, per_family: int = 60, seed: int = 0) -> np.ndarray:
    """(N, S, S, 3) uint8: square non-skin pictures at S = spec.resize_size (synthetic + sample-photo crops)."""
    from hypoderm.data import nonskin

    side = spec.resize_size
    out = []
    for _, img in nonskin.suite(per_family, FIRST_SEED, nonskin.FIT):
        out.append(_square(img, side))
    rng = np.random.default_rng(seed)
    for _, img in nonskin.sample_photos():
        out.append(_square(img, side))
        for crop in nonskin.closeups(img, rng, CROPS_PER_PHOTO):
            out.append(_square(crop, side))
    return np.stack(out)


def _square(img: Image.Image, side: int) -> np.ndarray:
    """The picture resized like a training photo (shorter side `side`), centre-cropped to a square."""
    spec = PreprocessSpec(size=side, resize_size=side)
    return np.ascontiguousarray(center_crop_array(resized_uint8(img, spec), side))


def load_bank(spec: PreprocessSpec, cache_dir: str | os.PathLike | None, per_family: int = 60,
              seed: int = 0) -> list[torch.Tensor]:
    """`build_bank` as CHW uint8 tensors: from memory when this process built it before (the tensors are
    shared, never modified), else from `cache_dir` when it was built there before."""
    from hypoderm.data import nonskin

    photos = len(nonskin.sample_photos())
    key = hashlib.sha1(f"{spec.resize_size}|{per_family}|{seed}|{photos}|v1".encode()).hexdigest()
    if key in _BANKS:
        return _BANKS[key]
    path = Path(cache_dir) / f"outliers-{key}.npy" if cache_dir else None
    bank = None
    if path is not None and path.is_file():
        try:
            bank = np.load(path)
        except (OSError, ValueError):
            bank = None  # a damaged cache file is rebuilt
    if bank is None:
        bank = build_bank(spec, per_family, seed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, bank)
            os.replace(tmp, path)
    _BANKS[key] = [torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in bank]
    return _BANKS[key]


def uniform_target_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the logits to the uniform distribution: mean over classes of -log softmax."""
    return -F.log_softmax(logits, dim=1).mean(dim=1).mean()
