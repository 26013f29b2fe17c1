"""Grad-CAM overlays (pytorch-grad-cam) on the last convolutional feature stage. Needs torch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from hypoderm.preprocess import PreprocessSpec


def last_conv_stage(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM looks at: `model.features[-1]` for torchvision/hypoderm-style models
    (the last feature stage, before pooling), else the last Conv2d in the model."""
    features = getattr(model, "features", None)
    if isinstance(features, nn.Sequential) and len(features) > 0:
        return features[-1]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer for Grad-CAM")
    return convs[-1]


class GradCamExplainer:
    """Grad-CAM heat map of one class over the model's input crop."""

    def __init__(self, model: nn.Module, spec: PreprocessSpec, target_layer: nn.Module | None = None) -> None:
        from pytorch_grad_cam import GradCAM

        self.model = model.eval()
        self.spec = spec
        self.cam = GradCAM(model=self.model, target_layers=[target_layer or last_conv_stage(model)])

    def overlay(self, img: Image.Image, class_index: int) -> Image.Image:
        """RGB overlay (size x size) of the heat map for `class_index` on the centre crop."""
        import torch
        from pytorch_grad_cam.utils.image import show_cam_on_image
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        from hypoderm.inference import prepare

        crop, x = prepare(img, self.spec)
        heat = self.cam(input_tensor=torch.from_numpy(x[None]), targets=[ClassifierOutputTarget(int(class_index))])[0]
        return Image.fromarray(show_cam_on_image(crop.astype(np.float32) / 255.0, heat, use_rgb=True))

    def save(self, img: Image.Image, class_index: int, out_path: str | os.PathLike) -> Path:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        self.overlay(img, class_index).save(out_path, format="PNG")
        return out_path
