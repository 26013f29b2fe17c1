"""Grad-CAM inputs computed inside the exported graph, so that explanation needs no PyTorch.

Grad-CAM (Selvaraju et al. 2017) of class k at the last feature map A (N, C, h, w) is
ReLU(sum_c alpha_kc A_c) with alpha_kc = mean_ij d y_k / d A_cij. Our models end with
global-average pooling and a head of Linear layers and element-wise activations, so
d y_k / d A_cij = J_kc / (h w), where J = d head / d g is the head's Jacobian at the pooled vector
g = mean_ij A. The Jacobian of Linear/activation layers has a closed form (W_L D_{L-1} W_{L-1} ...
with D the activation's derivative at its input), written here with plain tensor ops, so the ONNX
graph returns three outputs: `logits`, `features` (= A) and `cam_weights` (= alpha, (N, K, C)).
`hypoderm.inference.explain` turns them into the heat map in numpy (and app/static/js/gradcam.js in the browser).

The target layer is the output of the model's last feature stage (`model.features` for the
MobileNet family, `layer4` for ResNets): the same layer for `predict`, `serve` and the browser.
"""

from __future__ import annotations

import torch
from torch import nn

from hypoderm.errors import HypodermError

FEATURES_OUTPUT = "features"
CAM_WEIGHTS_OUTPUT = "cam_weights"
LOGITS_OUTPUT = "logits"


class UnsupportedModelError(HypodermError, ValueError):
    """The model's structure is not features -> global average pool -> Linear/activation head."""


_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.SiLU, nn.Identity, nn.Dropout, nn.Flatten)


def _derivative(layer: nn.Module, z: torch.Tensor) -> torch.Tensor | None:
    """d layer(z) / d z element-wise (PyTorch's backward formulas); None for the identity."""
    one, zero = torch.ones_like(z), torch.zeros_like(z)
    if isinstance(layer, nn.ReLU):
        return torch.where(z > 0, one, zero)
    if isinstance(layer, nn.ReLU6):
        return torch.where((z > 0) & (z < 6), one, zero)
    if isinstance(layer, nn.LeakyReLU):
        return torch.where(z > 0, one, one * layer.negative_slope)
    if isinstance(layer, nn.Hardswish):
        return torch.where(z < -3, zero, torch.where(z <= 3, z / 3 + 0.5, one))
    if isinstance(layer, nn.SiLU):
        s = torch.sigmoid(z)
        return s * (1 + z * (1 - s))
    return None  # Identity, Dropout (eval), Flatten of an (N, C) vector


# a torchvision ResNet up to its last stage, the layer Grad-CAM explains
RESNET_TRUNK = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def split_model(model: nn.Module) -> tuple[nn.Module, list[nn.Module], str]:
    """(feature extractor, head layers, name of the target layer) or UnsupportedModelError."""
    features: nn.Module | None = None
    head: list[nn.Module] | None = None
    layer = ""
    trunk, classifier, fc = (getattr(model, n, None) for n in ("features", "classifier", "fc"))
    if isinstance(trunk, nn.Module) and isinstance(classifier, nn.Module):
        features, layer = trunk, "features"
        head = list(classifier) if isinstance(classifier, nn.Sequential) else [classifier]
    elif isinstance(fc, nn.Module) and all(isinstance(getattr(model, n, None), nn.Module)
                                           for n in ("conv1", "bn1", "layer4")):
        features = nn.Sequential(*(getattr(model, n) for n in RESNET_TRUNK))
        head, layer = [fc], "layer4"
    if features is None or head is None:
        raise UnsupportedModelError(f"{type(model).__name__}: no features/classifier (or layer4/fc) to explain")
    for m in head:
        if not isinstance(m, (nn.Linear, *_ELEMENTWISE)):
            raise UnsupportedModelError(f"{type(model).__name__}: head layer {type(m).__name__} has no closed-form "
                                        "Jacobian here")
    if not any(isinstance(m, nn.Linear) for m in head):
        raise UnsupportedModelError(f"{type(model).__name__}: the head has no Linear layer")
    return features, head, layer


def head_with_jacobian(head: list[nn.Module], g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, K), d logits / d g (N, K, C)) for pooled features g (N, C)."""
    steps: list[tuple[nn.Module, torch.Tensor]] = []
    h = g
    for layer in head:
        steps.append((layer, h))
        h = layer(h)
    jac: torch.Tensor | None = None  # (N, K, width) once the last Linear is reached
    for layer, z in reversed(steps):
        if isinstance(layer, nn.Linear):
            w = layer.weight  # (out, in)
            jac = w.unsqueeze(0).expand(z.shape[0], -1, -1) if jac is None else torch.matmul(jac, w)
        else:
            d = _derivative(layer, z)
            if d is not None:  # (an activation after the last Linear starts from diag(d))
                jac = torch.diag_embed(d) if jac is None else jac * d.unsqueeze(1)
    assert jac is not None
    return h, jac


class GradCamGraph(nn.Module):
    """`model` with two more outputs for Grad-CAM: features (N, C, h, w) and cam_weights (N, K, C)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.features, head, self.layer = split_model(model)
        self.head = nn.ModuleList(head)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.features(x)
        g = a.mean(dim=(2, 3))
        logits, jac = head_with_jacobian(list(self.head), g)
        return logits, a, jac / (a.shape[2] * a.shape[3])


def gradcam_graph(model: nn.Module, size: int, tol: float = 1e-4) -> GradCamGraph:
    """GradCamGraph of `model`, checked to give the model's own logits (raises UnsupportedModelError
    when the model does more than features -> average pool -> head, e.g. DenseNet's final ReLU)."""
    wrapped = GradCamGraph(model.eval()).eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)
        got = wrapped(x)[0]
    if not torch.allclose(want, got, atol=tol, rtol=1e-4):
        raise UnsupportedModelError(f"{type(model).__name__}: features -> mean -> head does not reproduce the "
                                    f"model's logits (max diff {float((want - got).abs().max()):.3g})")
    return wrapped
