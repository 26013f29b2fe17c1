"""Helpers for the app / API / fuzz / robustness tests: a small exported model directory per the
hypoderm-onnx/1 contract, and photo-like PNG bytes (torch imported only inside the exporter)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CLASSES = ["normal_skin", "tinea_versicolor", "vitiligo"]


def build_model_dir(out: Path, size: int = 64, classes: list[str] | None = None, seed: int = 0,
                    temperature: float = 1.3, abstain_threshold: float = 0.4, model_name: str = "tiny",
                    model: Any = None, extra: dict | None = None) -> Path:
    """Export a small CNN (or `model`) to `out/model.onnx` + `out/model.json` per the hypoderm-onnx/1 contract."""
    import torch

    from hypoderm.export import export_onnx
    from hypoderm.inference.metadata import input_block
    from hypoderm.inference.preprocess import PreprocessSpec

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    classes = list(classes or CLASSES)
    if model is None:
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, len(classes)))
    metadata = {
        "format": "hypoderm-onnx/1", "model_name": model_name, "version": "0.1.0", "precision": "fp32",
        "class_names": classes, "input": input_block(PreprocessSpec.for_size(size)), "output": {"name": "logits"},
        "temperature": temperature, "abstain_threshold": abstain_threshold,
        "ood": {"skin_fraction_min": 0.05, "max_logit_min": -1e9},
        "training_data": {"summary": "synthetic test model", "counts": {c: 0 for c in classes}},
        "metrics": {"test/macro_f1": 0.5}, "disclaimer": "Decision aid, not a medical device.", **(extra or {}),
    }
    export_onnx(model.eval(), metadata, out / "model.onnx")
    return out


def skin_png(size: tuple[int, int] = (160, 120), seed: int = 0) -> bytes:
    """A skin-toned photo-like picture with a pale patch, as PNG bytes (large enough to be judged:
    hypoderm.inference.MIN_SOURCE_SIDE)."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = np.empty((h, w, 3), np.float32)
    arr[:] = (200, 150, 120)
    arr += rng.normal(0, 6, arr.shape)
    arr[h // 4: h // 2, w // 4: w // 2] = (235, 225, 215)
    return png_bytes(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))


def png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def skin_photo(path: Path, size: int = 224, seed: int = 0) -> Path:
    """A skin-toned synthetic photo with one pale patch, written to `path` (PNG)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    arr = np.empty((size, size, 3), np.float32)
    arr[:] = (190, 135, 105)
    arr += rng.normal(0, 5, arr.shape) + (xx / size * 20)[..., None]
    patch = (yy - size * 0.45) ** 2 + (xx - size * 0.55) ** 2 < (size * 0.2) ** 2
    arr[patch] = arr[patch] * 0.3 + 240 * 0.7
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path)
    return path


def phone_like_jpeg(width: int = 4032, height: int = 3024, seed: int = 0, noise: float = 6.0) -> bytes:
    """A stand-in for a phone photo at camera resolution: skin tones, smooth texture, sensor-like noise
    (std `noise`) and pale patches, JPEG quality 90 (a 12 MP one is 2-4 MB, like a real photo)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(-30, 30, (12, 16, 3)).astype(np.float32)
    bicubic = Image.Resampling.BICUBIC
    texture = np.stack([np.asarray(Image.fromarray(small[..., c], "F").resize((width, height), bicubic))
                        for c in range(3)], axis=-1)
    arr = np.array([205, 150, 120], np.float32) + texture + rng.normal(0, noise, (height, width, 3)).astype(np.float32)
    yy, xx = np.ogrid[:height, :width]
    for _ in range(3):
        cy, cx, r = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width, rng.uniform(0.05, 0.15) * height
        patch = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        arr[patch] = arr[patch] * 0.4 + 150
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def confident(model: object, top: int = 1, margin: float = 3.0) -> object:
    """`model` with its last linear layer's bias raised by `margin` for class `top`: a random-weight network's logits
    are near zero (at chance), and hypoderm never answers at chance (hypoderm.model_quality.abstain_floor), so a test
    that needs an answer from it gives the network a preference."""
    import torch

    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]  # type: ignore[attr-defined]
    with torch.no_grad():
        last.bias[top] += margin
    return model
