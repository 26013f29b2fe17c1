"""One API for every model: `create_model(name, num_classes, pretrained=None, **options)`."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn

from hypoderm.errors import HypodermError
from hypoderm.models.mobilenetv3 import (
    MNV3_SMALL,
    STAGE_14_STRIDE1,
    MobileNetV3,
    dilate,
    with_activation,
    with_attention,
)

log = logging.getLogger("hypoderm.models")

# name -> (eca, leaky_relu, dilation): the 8 combinations of the paper's three changes.
VARIANTS: dict[str, tuple[bool, bool, bool]] = {
    "mnv3s": (False, False, False),
    "mnv3s-eca": (True, False, False),
    "mnv3s-lrelu": (False, True, False),
    "mnv3s-dil": (False, False, True),
    "mnv3s-eca-lrelu": (True, True, False),
    "mnv3s-eca-dil": (True, False, True),
    "mnv3s-lrelu-dil": (False, True, True),
    "mnv3s-eca-lrelu-dil": (True, True, True),
}
# `hypodermnet` is the model we recommend and ship: the paper's three changes with the dilation placement
# the comparison study picked (benchmarks/comparison/README.md): dilation rate 2 on the two stride-1
# blocks of the 7x7 stage, which scored higher than the 14x14-stage placement (`mnv3s-eca-lrelu-dil`)
# and avoids the dilated 14x14 depthwise convolutions that are slow in ONNX Runtime.
ALIASES = {"hypodermnet": "hypodermnet-dil7"}

# Design alternatives of the paper's model that PAPER.md leaves open (where the dilation sits, where
# ECA sits, the Leaky-ReLU slope): named so the comparison study can train and time them.
DESIGN_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "hypodermnet-dil7": ("mnv3s-eca-lrelu-dil", {"dilation_blocks": (9, 10)}),  # dilate the 7x7 stage instead
    "hypodermnet-dil1": ("mnv3s-eca-lrelu-dil", {"dilation_blocks": (7,)}),  # one 14x14 block only
    "hypodermnet-ecaproj": ("mnv3s-eca-lrelu-dil", {"eca_placement": "project"}),  # ECA after the projection
    "hypodermnet-slope0.1": ("mnv3s-eca-lrelu-dil", {"leaky_slope": 0.1}),
}

# torchvision baselines: name -> (builder, ImageNet weights enum member)
BASELINES: dict[str, tuple[Callable[..., nn.Module], Any]] = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2),
    "mobilenet_v2": (tvm.mobilenet_v2, tvm.MobileNet_V2_Weights.IMAGENET1K_V2),
    "mobilenet_v3_large": (tvm.mobilenet_v3_large, tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V2),
    "shufflenet_v2_x1_0": (tvm.shufflenet_v2_x1_0, tvm.ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1),
    "efficientnet_b0": (tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights.IMAGENET1K_V1),
    "densenet121": (tvm.densenet121, tvm.DenseNet121_Weights.IMAGENET1K_V1),
}
MNV3S_WEIGHTS = tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1

# Options each variant accepts (beyond num_classes / pretrained).
_COMMON_OPTIONS = {"dropout"}
_ECA_OPTIONS = {"eca_placement"}
_LRELU_OPTIONS = {"leaky_slope"}
_DIL_OPTIONS = {"dilation_rate", "dilation_blocks"}


def list_models(include_aliases: bool = True) -> list[str]:
    names = list(VARIANTS) + list(DESIGN_VARIANTS) + list(BASELINES)
    return names + list(ALIASES) if include_aliases else names


def canonical_name(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in VARIANTS and name not in BASELINES and name not in DESIGN_VARIANTS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return name


def is_table_model(name: str) -> bool:
    """True for the MobileNetV3-Small family built from our table (variants and design variants)."""
    return canonical_name(name) not in BASELINES


def mnv3s_spec(name: str, **options: Any):
    """The architecture table of a named `mnv3s*` variant or design variant."""
    name = canonical_name(name)
    if name in DESIGN_VARIANTS:
        name, fixed = DESIGN_VARIANTS[name]
        options = {**fixed, **options}
    return _variant_spec(name, **options)


def _variant_spec(name: str, *, dropout: float = 0.2, eca_placement: str = "depthwise", leaky_slope: float = 0.01,
                  dilation_rate: int = 2, dilation_blocks: tuple[int, ...] = STAGE_14_STRIDE1):
    eca, lrelu, dil = VARIANTS[name]
    spec = MNV3_SMALL
    if eca:
        spec = with_attention(spec, "eca", placement=eca_placement)  # type: ignore[arg-type]
    if lrelu:
        spec = with_activation(spec, "leaky_relu", leaky_slope=leaky_slope)
    if dil:
        spec = dilate(spec, tuple(dilation_blocks), dilation_rate)
    from dataclasses import replace

    return replace(spec, dropout=dropout)


def _base_variant(name: str) -> str:
    return DESIGN_VARIANTS[name][0] if name in DESIGN_VARIANTS else name


def _check_options(name: str, options: dict[str, Any]) -> None:
    if name in BASELINES:
        allowed: set[str] = set()
    else:
        eca, lrelu, dil = VARIANTS[_base_variant(name)]
        allowed = _COMMON_OPTIONS | (_ECA_OPTIONS if eca else set()) | (_LRELU_OPTIONS if lrelu else set()) \
            | (_DIL_OPTIONS if dil else set())
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"model {name!r} does not take option(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sorted(allowed)) or 'none'}")


def create_model(name: str, num_classes: int = 1000, pretrained: str | os.PathLike | None = None,
                 **options: Any) -> nn.Module:
    """Build a model by name.

    `pretrained` is a path to a torchvision-format state dict, or "imagenet" for torchvision's
    weights file in the local torch hub cache (never downloaded here). Tensors whose name and shape
    match are loaded; the rest are reported in `model.pretrained_report` (and logged).
    """
    name = canonical_name(name)
    _check_options(name, options)
    if name in BASELINES:
        model = BASELINES[name][0](weights=None, num_classes=num_classes)
    else:
        model = MobileNetV3(mnv3s_spec(name, **options), num_classes=num_classes)
    if pretrained is not None:
        state = _read_state_dict(pretrained, name)
        model.pretrained_report = load_matching(model, state)  # type: ignore[assignment]
        log.info("%s: %s", name, model.pretrained_report)
        if not model.pretrained_report.loaded:  # type: ignore[union-attr]
            raise PretrainedMismatchError(
                f"the weights file {Path(str(pretrained)).name} has no tensor that fits {name} (it holds weights of "
                "another architecture); give that model's own weights, or train it from scratch (--pretrained none)")
    return model


class PretrainedMismatchError(HypodermError, ValueError):
    """A pretrained weights file of which no tensor fits the model (e.g. MobileNetV3 weights for resnet50)."""


_DIGESTS: dict[tuple[str, int, int], str] = {}


def weights_record(pretrained: str | os.PathLike | None, name: str) -> dict[str, str] | None:
    """{"file": its name, "sha256": ...} of the weights a model started from (None: from scratch), for the
    checkpoint and model.json: which weights, never where they lay on the machine that trained."""
    if pretrained is None:
        return None
    path = imagenet_weights_path(name) if str(pretrained) == "imagenet" else Path(pretrained)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:  # once per process: checkpoints are written every epoch
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return {"file": path.name, "sha256": _DIGESTS[key]}


def imagenet_weights_path(name: str) -> Path:
    """Where torchvision keeps the ImageNet weights file of `name` (its hub cache)."""
    name = canonical_name(name)
    weights = BASELINES[name][1] if name in BASELINES else MNV3S_WEIGHTS
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _read_state_dict(pretrained: str | os.PathLike, name: str) -> dict[str, torch.Tensor]:
    path = imagenet_weights_path(name) if str(pretrained) == "imagenet" else Path(pretrained)
    if not path.is_file():
        hint = (" Put torchvision's file there (no download is attempted)." if str(pretrained) == "imagenet" else "")
        raise FileNotFoundError(f"pretrained weights not found: {path}.{hint}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path} is not a readable PyTorch state dict ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a hypoderm checkpoint or a Lightning-style file
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (name -> tensor)")
    return obj


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model (e.g. SE -> ECA)
    missing: list[str] = field(default_factory=list)  # in the model, not loaded: initialised fresh

    def __str__(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.shape_mismatch:
            parts.append("skipped (shape differs): " + ", ".join(f"{k} {s}->{d}" for k, s, d in self.shape_mismatch))
        if self.unexpected:
            parts.append(f"skipped (not in model): {len(self.unexpected)} e.g. {', '.join(self.unexpected[:4])}")
        if self.missing:
            parts.append(f"initialised fresh: {len(self.missing)} e.g. {', '.join(self.missing[:4])}")
        return "; ".join(parts)


def load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> LoadReport:
    """Copy every tensor whose name and shape match; report everything else."""
    own = model.state_dict()
    report = LoadReport()
    take: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif own[k].shape != v.shape:
            report.shape_mismatch.append((k, tuple(v.shape), tuple(own[k].shape)))
        else:
            take[k] = v
    report.loaded = list(take)
    report.missing = [k for k in own if k not in take]
    model.load_state_dict(take, strict=False)
    return report


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
