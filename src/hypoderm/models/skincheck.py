"""The learned skin check's network (`hypoderm.inference.skincheck` describes what it is for).

torchvision's MobileNetV3-Small trunk started from the ImageNet weights (the blocks before `FROZEN` stay as
ImageNet made them: they are what still knows what bread, cloth and animals look like), global average pooling
and one logit, positive for skin. benchmarks/nonskin/learned/fit_skin_check.py fits it and writes the shipped
assets/skin_check.onnx.
"""

from __future__ import annotations

import os

import torch
import torchvision
from torch import nn

FROZEN = 9  # features[:9] (stem and the blocks up to 48 channels at 1/16 resolution) keep their ImageNet weights


class SkinCheckNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torchvision.models.mobilenet_v3_small().features
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(576, 1))

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen part: (N, 3, H, W) ImageNet-normalised -> (N, 48, H/16, W/16)."""
        return self.features[:FROZEN](x)

    def tail(self, t: torch.Tensor) -> torch.Tensor:
        """The fitted part: trunk activations -> (N, 1) skin logit."""
        return self.head(self.features[FROZEN:](t).mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.trunk(x))


def from_imagenet(path: str | os.PathLike) -> SkinCheckNet:
    """A SkinCheckNet whose trunk holds the ImageNet weights of torchvision's MobileNetV3-Small (`path`: its
    state dict, e.g. the Apache-2.0 file of ../shared/weights); every `features.*` tensor must match."""
    net = SkinCheckNet()
    state = torch.load(path, map_location="cpu", weights_only=True)
    feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    net.features.load_state_dict(feats, strict=True)
    return net
