"""Helpers for the app / API / fuzz / robustness tests: a small exported model directory per the
hypoderm-onnx/1 contract, and photo-like PNG bytes (torch imported only inside the exporter)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["normal_skin", "tinea_versicolor", "vitiligo"]


def build_model_dir(out: Path, size: int = 64, classes: list[str] | None = None, seed: int = 0,
                    temperature: float = 1.3, abstain_threshold: float = 0.4, model_name: str = "tiny",
                    model: object | None = None, extra: dict | None = None) -> Path:
    """Export a small CNN (or `model`) to `out/model.onnx` + `out/model.json` per the hypoderm-onnx/1 contract."""
    import torch

    from hypoderm.export import export_onnx
    from hypoderm.export.metadata import input_block
    from hypoderm.preprocess import PreprocessSpec

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


def skin_png(size: tuple[int, int] = (80, 60), seed: int = 0) -> bytes:
    """A skin-toned photo-like picture with a pale patch, as PNG bytes."""
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
