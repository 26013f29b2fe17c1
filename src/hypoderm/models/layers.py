"""Building blocks shared by the models: ECA and the activation factory.

Conv+BN+activation and Squeeze-and-Excitation come from torchvision.ops, so that the reference
model keeps torchvision's exact parameter names and numerics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = ("relu", "hardswish", "leaky_relu")


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1, min_size: int = 3) -> int:
    """ECA's adaptive kernel size (Wang et al. 2020, eq. 12): the odd number nearest |(log2 C + b) / gamma|.

    `t = int(|(log2 C + b) / gamma|); k = t if t is odd else t + 1`, clamped to >= `min_size`
    (as timm does: a kernel of 1 would make the attention channel-independent).
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    t = int(abs((math.log2(channels) + b) / gamma))
    k = t if t % 2 else t + 1
    return max(k, min_size)


class ECA(nn.Module):
    """Efficient Channel Attention: global average pool -> 1-D conv across channels -> sigmoid -> scale.

    The 1-D convolution runs on a *view* of the pooled (N, C, 1, 1) tensor as (N, 1, C): that
    is the same memory, so no transpose is needed (the reference implementation transposes
    twice, which costs two Transpose nodes in ONNX).
    """

    def __init__(self, channels: int, kernel_size: int | None = None) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size or eca_kernel_size(channels)
        self.conv = nn.Conv1d(1, 1, self.kernel_size, padding=self.kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        y = F.adaptive_avg_pool2d(x, 1).view(n, 1, c)  # GlobalAveragePool in ONNX (ReduceMean is slower)
        y = self.conv(y).view(n, c, 1, 1)
        return x * torch.sigmoid(y)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}"


def make_divisible(value: float, divisor: int) -> int:
    """Round to the nearest multiple of `divisor`, never more than 10% down (MobileNet's rule)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def activation_layer(name: str, leaky_slope: float = 0.01) -> Callable[..., nn.Module]:
    """A constructor for the named activation (what torchvision's Conv2dNormActivation expects)."""
    if name == "relu":
        return nn.ReLU
    if name == "hardswish":
        return nn.Hardswish
    if name == "leaky_relu":
        return partial(nn.LeakyReLU, leaky_slope)
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
