"""MixStyle (Zhou, Yang, Qiao, Xiang, "Domain generalization with MixStyle", ICLR 2021): while training, the
per-image channel means and standard deviations of early feature maps (what carries a photo's style: colour
balance, contrast, sharpness) are mixed with those of another image of the batch, so the network cannot lean on
the style of the source a photo came from. Identity in eval mode and in the exported model: it is a forward hook
added for training, holds no weights and leaves the state dict alone.

    ms = MixStyle(p=0.5, alpha=0.1)
    handles = ms.attach(model)         # hooks after the first three resolution stages
    ms.limit = n                       # per batch: mix only the first n images (the skin photos), not the outliers
"""

from __future__ import annotations

import torch
from torch import nn


class MixStyle:
    """Mix instance statistics with probability `p` per batch; the mixing weight ~ Beta(alpha, alpha)."""

    def __init__(self, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"MixStyle p must be in [0, 1], got {p}")
        if alpha <= 0:
            raise ValueError(f"MixStyle alpha must be > 0, got {alpha}")
        self.p, self.eps = p, eps
        self.beta = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha))
        # images [0, limit) of each batch are mixed among themselves, the rest (outlier exposure) untouched;
        # None = the whole batch
        self.limit: int | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x) if self.limit is None else min(self.limit, len(x))
        if n < 2 or x.ndim != 4 or torch.rand(()).item() >= self.p:
            return x
        head = x[:n]
        mu = head.mean(dim=(2, 3), keepdim=True).detach()
        sig = (head.var(dim=(2, 3), keepdim=True) + self.eps).sqrt().detach()
        lam = self.beta.sample((n, 1, 1, 1)).to(device=x.device, dtype=x.dtype)
        perm = torch.randperm(n, device=x.device)
        mixed = (head - mu) / sig * (sig * lam + sig[perm] * (1 - lam)) + (mu * lam + mu[perm] * (1 - lam))
        return torch.cat([mixed, x[n:]]) if n < len(x) else mixed

    def _hook(self, module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        return self(output) if module.training else output

    def attach(self, model: nn.Module, sites: list[nn.Module] | None = None) -> list[torch.utils.hooks.RemovableHandle]:
        """Hook MixStyle onto the outputs of `sites` (default: `style_sites(model)`); returns the handles."""
        return [m.register_forward_hook(self._hook) for m in (sites if sites is not None else style_sites(model))]


def style_sites(model: nn.Module, stages: int = 3) -> list[nn.Module]:
    """The modules whose outputs end the first `stages` resolution stages after the stem, where MixStyle goes
    (the paper: after ResNet's layer1-3). ResNets: layer1..; models with a `features` Sequential (the
    MobileNetV3-Small family, torchvision's MobileNets, EfficientNet, ...): the last block before each change of
    resolution, found by one small forward pass."""
    if all(hasattr(model, f"layer{i}") for i in range(1, stages + 1)):
        return [getattr(model, f"layer{i}") for i in range(1, stages + 1)]
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Sequential) or len(features) < 3:
        raise ValueError(f"MixStyle needs a model with layer1-{stages} (ResNet) or a `features` Sequential; "
                         f"{type(model).__name__} has neither")
    sizes: list[int] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: sizes.append(out.shape[-1])) for m in features]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            features(torch.zeros(1, 3, 64, 64, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    # stage ends: a block whose successor changes the resolution (the stem, block 0, is not a stage)
    ends = [i for i in range(1, len(features) - 1) if sizes[i + 1] != sizes[i]]
    if not ends:
        raise ValueError(f"MixStyle found no change of resolution in {type(model).__name__}.features")
    return [features[i] for i in ends[:stages]]
