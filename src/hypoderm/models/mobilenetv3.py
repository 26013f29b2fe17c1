"""MobileNetV3-Small as a table, and the paper's three changes as pure functions over it.

The reference table reproduces torchvision's `mobilenet_v3_small` exactly (same modules, same
parameter names, same numerics): Howard et al. 2019, Table 2. The improved model of Gao, Xiao &
Yang (2024) is that table with (1) ECA in place of every SE block, (2) Leaky-ReLU in place of
ReLU and hard-swish, (3) dilated depthwise convolutions in the 14x14 stage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

from hypoderm.models.layers import ECA, activation_layer, make_divisible

Attention = Literal["se", "eca"] | None
Activation = Literal["relu", "hardswish", "leaky_relu"]
EcaPlacement = Literal["depthwise", "project"]

BN_EPS, BN_MOMENTUM = 0.001, 0.01  # torchvision's MobileNetV3 BatchNorm settings


@dataclass(frozen=True)
class BlockConfig:
    """One inverted-residual ("bneck") block of MobileNetV3."""

    in_channels: int
    kernel: int
    expanded_channels: int
    out_channels: int
    attention: Attention
    activation: Activation
    stride: int
    dilation: int = 1

    @property
    def use_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class MobileNetV3Spec:
    """The whole architecture: blocks plus stem, last conv and head."""

    blocks: tuple[BlockConfig, ...]
    stem_channels: int = 16
    stem_activation: Activation = "hardswish"
    last_conv_channels: int = 576
    last_activation: Activation = "hardswish"
    head_channels: int = 1024
    head_activation: Activation = "hardswish"
    leaky_slope: float = 0.01
    eca_placement: EcaPlacement = "depthwise"
    dropout: float = 0.2


def _b(i: int, k: int, e: int, o: int, se: bool, act: str, s: int) -> BlockConfig:
    return BlockConfig(i, k, e, o, "se" if se else None, "relu" if act == "RE" else "hardswish", s)


# Howard et al. 2019, Table 2 (MobileNetV3-Small). Input resolution at 224 px in the comments.
MNV3_SMALL = MobileNetV3Spec(
    blocks=(
        _b(16, 3, 16, 16, True, "RE", 2),  # C1: 112 -> 56
        _b(16, 3, 72, 24, False, "RE", 2),  # C2: 56 -> 28
        _b(24, 3, 88, 24, False, "RE", 1),
        _b(24, 5, 96, 40, True, "HS", 2),  # C3: 28 -> 14
        _b(40, 5, 240, 40, True, "HS", 1),
        _b(40, 5, 240, 40, True, "HS", 1),
        _b(40, 5, 120, 48, True, "HS", 1),
        _b(48, 5, 144, 48, True, "HS", 1),
        _b(48, 5, 288, 96, True, "HS", 2),  # C4: 14 -> 7
        _b(96, 5, 576, 96, True, "HS", 1),
        _b(96, 5, 576, 96, True, "HS", 1),
    )
)

# Blocks of the 14x14 stage (0-based indices into `blocks`) whose depthwise conv has stride 1.
STAGE_14_STRIDE1 = (4, 5, 6, 7)


# --- the paper's three changes, as pure functions over the table --------------------------


def with_attention(spec: MobileNetV3Spec, attention: Attention,
                   placement: EcaPlacement = "depthwise") -> MobileNetV3Spec:
    """Put `attention` wherever the reference has SE (ECA: the paper's change 1)."""
    if attention not in ("se", "eca", None):
        raise ValueError(f"unknown attention {attention!r}; valid: 'se', 'eca', None")
    blocks = tuple(replace(b, attention=attention) if b.attention else b for b in spec.blocks)
    return replace(spec, blocks=blocks, eca_placement=placement)


def with_activation(spec: MobileNetV3Spec, activation: Activation, leaky_slope: float = 0.01) -> MobileNetV3Spec:
    """Use one activation everywhere the reference uses ReLU or hard-swish (change 2)."""
    activation_layer(activation)  # validates the name
    blocks = tuple(replace(b, activation=activation) for b in spec.blocks)
    return replace(spec, blocks=blocks, stem_activation=activation, last_activation=activation,
                   head_activation=activation, leaky_slope=leaky_slope)


def dilate(spec: MobileNetV3Spec, blocks: tuple[int, ...] = STAGE_14_STRIDE1, rate: int = 2) -> MobileNetV3Spec:
    """Dilate the depthwise conv of the given stride-1 blocks (change 3); output stride is unchanged."""
    if rate < 1:
        raise ValueError(f"dilation rate must be >= 1, got {rate}")
    new = list(spec.blocks)
    for i in blocks:
        if not 0 <= i < len(new):
            raise ValueError(f"block index {i} out of range 0..{len(new) - 1}")
        if new[i].stride != 1:
            raise ValueError(f"block {i} has stride {new[i].stride}; only stride-1 blocks can be dilated "
                             "without changing the output stride")
        new[i] = replace(new[i], dilation=rate)
    return replace(spec, blocks=tuple(new))


def receptive_field(spec: MobileNetV3Spec) -> int:
    """Theoretical receptive field (pixels) of one unit of the last feature map."""
    rf, jump = 3, 2  # stem: 3x3, stride 2
    for b in spec.blocks:
        rf += b.dilation * (b.kernel - 1) * jump
        jump *= b.stride
    return rf


def output_stride(spec: MobileNetV3Spec) -> int:
    stride = 2
    for b in spec.blocks:
        stride *= b.stride
    return stride


# --- modules ------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise kxk -> attention -> 1x1 project (+ residual); torchvision's layout."""

    def __init__(self, cfg: BlockConfig, spec: MobileNetV3Spec) -> None:
        super().__init__()
        if cfg.stride not in (1, 2):
            raise ValueError(f"illegal stride {cfg.stride}")
        norm = _norm_layer
        act = activation_layer(cfg.activation, spec.leaky_slope)
        layers: list[nn.Module] = []
        if cfg.expanded_channels != cfg.in_channels:
            layers.append(Conv2dNormActivation(cfg.in_channels, cfg.expanded_channels, kernel_size=1,
                                               norm_layer=norm, activation_layer=act))
        layers.append(Conv2dNormActivation(cfg.expanded_channels, cfg.expanded_channels, kernel_size=cfg.kernel,
                                           stride=cfg.stride, dilation=cfg.dilation,
                                           groups=cfg.expanded_channels, norm_layer=norm, activation_layer=act))
        if cfg.attention == "se":
            squeeze = make_divisible(cfg.expanded_channels // 4, 8)
            layers.append(SqueezeExcitation(cfg.expanded_channels, squeeze, scale_activation=nn.Hardsigmoid))
        elif cfg.attention == "eca" and spec.eca_placement == "depthwise":
            layers.append(ECA(cfg.expanded_channels))
        layers.append(Conv2dNormActivation(cfg.expanded_channels, cfg.out_channels, kernel_size=1,
                                           norm_layer=norm, activation_layer=None))
        if cfg.attention == "eca" and spec.eca_placement == "project":
            layers.append(ECA(cfg.out_channels))
        self.block = nn.Sequential(*layers)
        self.use_residual = cfg.use_residual
        self.out_channels = cfg.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


def _norm_layer(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MobileNetV3(nn.Module):
    """MobileNetV3 built from a `MobileNetV3Spec`; parameter names match torchvision's."""

    def __init__(self, spec: MobileNetV3Spec, num_classes: int = 1000) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.spec = spec
        layers: list[nn.Module] = [
            Conv2dNormActivation(3, spec.stem_channels, kernel_size=3, stride=2, norm_layer=_norm_layer,
                                 activation_layer=activation_layer(spec.stem_activation, spec.leaky_slope)),
        ]
        layers += [InvertedResidual(b, spec) for b in spec.blocks]
        layers.append(Conv2dNormActivation(spec.blocks[-1].out_channels, spec.last_conv_channels, kernel_size=1,
                                           norm_layer=_norm_layer,
                                           activation_layer=activation_layer(spec.last_activation, spec.leaky_slope)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(spec.last_conv_channels, spec.head_channels),
            # not in-place: Leaky-ReLU's backward needs its output, which the in-place dropout would overwrite
            activation_layer(spec.head_activation, spec.leaky_slope)(inplace=False),
            nn.Dropout(p=spec.dropout, inplace=True),
            nn.Linear(spec.head_channels, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's initialisation, so from-scratch training starts from the same distribution.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
            # ECA's Conv1d keeps PyTorch's default (kaiming-uniform), as the ECA-Net code does.

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
