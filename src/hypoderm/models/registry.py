"""One API for every model: `create_model(name, num_classes, pretrained=None, **options)`.

Every model is one `ModelRecord` in `MODELS`, registered with `register(ModelRecord(...))` (as timm's
`@register_model`): its name, the builder, its family, which of the paper's three changes it has (ECA, Leaky-ReLU,
dilation), the options it takes, its ImageNet weights and its aliases. Everything that lists, builds, counts or
times models (`create_model`, `list_models`, `hypoderm models`, `hypoderm bench`, the comparison study, the tests)
reads the records, so adding a model is one record and its builder.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torchvision.models as tvm
from torch import nn

from hypoderm.errors import HypodermError, UsageError, torch_load_failure
from hypoderm.models.layers import ECA
from hypoderm.models.mobilenetv3 import (
    MNV3_SMALL,
    STAGE_14_STRIDE1,
    MobileNetV3,
    MobileNetV3Spec,
    dilate,
    with_activation,
    with_attention,
)

log = logging.getLogger("hypoderm.models")

Family = Literal["variant", "design", "baseline"]
# what `hypoderm models` calls each family
FAMILY_LABELS: dict[str, str] = {"variant": "MobileNetV3-Small variant", "design": "design variant",
                                 "baseline": "torchvision baseline"}


@dataclass(frozen=True)
class ModelRecord:
    """One model of the zoo.

    `build(num_classes, **options)` makes the network; `spec(**options)` gives the architecture table of the
    MobileNetV3-Small family (None for a torchvision baseline); `options` are the keyword options `create_model`
    accepts beyond num_classes and pretrained; `imagenet_weights` is the torchvision weights entry whose file
    `pretrained="imagenet"` reads from the torch hub cache."""

    name: str
    build: Callable[..., nn.Module]
    family: Family
    eca: bool = False
    leaky_relu: bool = False
    dilation: bool = False
    options: frozenset[str] = frozenset()
    imagenet_weights: Any = None
    spec: Callable[..., MobileNetV3Spec] | None = None
    aliases: tuple[str, ...] = ()

    @property
    def baseline(self) -> bool:
        return self.family == "baseline"

    @property
    def family_label(self) -> str:
        return FAMILY_LABELS[self.family]


MODELS: dict[str, ModelRecord] = {}
_ALIASES: dict[str, str] = {}  # alias -> name, from the records' `aliases`


def register(record: ModelRecord) -> ModelRecord:
    """Add `record` to the zoo (a name or alias may be taken once)."""
    for name in (record.name, *record.aliases):
        if name in MODELS or name in _ALIASES:
            raise ValueError(f"model name {name!r} is registered twice")
    MODELS[record.name] = record
    _ALIASES.update({alias: record.name for alias in record.aliases})
    return record


# Options the MobileNetV3-Small family accepts (beyond num_classes / pretrained), by the change they tune.
_COMMON_OPTIONS = {"dropout"}
_ECA_OPTIONS = {"eca_placement"}
_LRELU_OPTIONS = {"leaky_slope"}
_DIL_OPTIONS = {"dilation_rate", "dilation_blocks"}
MNV3S_WEIGHTS = tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1


def _table_spec(eca: bool, lrelu: bool, dil: bool, fixed: dict[str, Any]) -> Callable[..., MobileNetV3Spec]:
    """The spec builder of a MobileNetV3-Small with the given changes; `fixed` are the record's own option values
    (a design variant's), which the caller's options override."""

    def spec(**options: Any) -> MobileNetV3Spec:
        return _variant_spec(eca, lrelu, dil, **{**fixed, **options})

    return spec


def _variant_spec(eca: bool, lrelu: bool, dil: bool, *, dropout: float = 0.2, eca_placement: str = "depthwise",
                  leaky_slope: float = 0.01, dilation_rate: int = 2,
                  dilation_blocks: tuple[int, ...] = STAGE_14_STRIDE1) -> MobileNetV3Spec:
    spec = MNV3_SMALL
    if eca:
        spec = with_attention(spec, "eca", placement=eca_placement)  # type: ignore[arg-type]
    if lrelu:
        spec = with_activation(spec, "leaky_relu", leaky_slope=leaky_slope)
    if dil:
        spec = dilate(spec, tuple(dilation_blocks), dilation_rate)
    return replace(spec, dropout=dropout)


def table_record(name: str, *, eca: bool = False, lrelu: bool = False, dil: bool = False, family: Family = "variant",
                 aliases: tuple[str, ...] = (), **fixed: Any) -> ModelRecord:
    """The record of a MobileNetV3-Small built from our table, with the paper's changes `eca`, `lrelu`, `dil`."""
    spec = _table_spec(eca, lrelu, dil, fixed)

    def build(num_classes: int, **options: Any) -> nn.Module:
        return MobileNetV3(spec(**options), num_classes=num_classes)

    options = _COMMON_OPTIONS | (_ECA_OPTIONS if eca else set()) | (_LRELU_OPTIONS if lrelu else set()) \
        | (_DIL_OPTIONS if dil else set())
    return ModelRecord(name, build, family, eca=eca, leaky_relu=lrelu, dilation=dil, options=frozenset(options),
                       imagenet_weights=MNV3S_WEIGHTS, spec=spec, aliases=aliases)


def baseline_record(builder: Callable[..., nn.Module], weights: Any) -> ModelRecord:
    """The record of a torchvision model, named as torchvision names its builder."""

    def build(num_classes: int) -> nn.Module:
        return builder(weights=None, num_classes=num_classes)

    return ModelRecord(builder.__name__, build, "baseline", imagenet_weights=weights)


# The 8 combinations of the paper's three changes (the ablation).
register(table_record("mnv3s"))
register(table_record("mnv3s-eca", eca=True))
register(table_record("mnv3s-lrelu", lrelu=True))
register(table_record("mnv3s-dil", dil=True))
register(table_record("mnv3s-eca-lrelu", eca=True, lrelu=True))
register(table_record("mnv3s-eca-dil", eca=True, dil=True))
register(table_record("mnv3s-lrelu-dil", lrelu=True, dil=True))
register(table_record("mnv3s-eca-lrelu-dil", eca=True, lrelu=True, dil=True))
# Design alternatives of the paper's model that PAPER.md leaves open (where the dilation sits, where ECA sits, the
# Leaky-ReLU slope): named so the comparison study can train and time them. `hypodermnet` is the model we recommend
# and ship: the paper's three changes with the dilation placement the comparison study picked
# (benchmarks/comparison/README.md): dilation rate 2 on the two stride-1 blocks of the 7x7 stage, which scored higher
# than the 14x14-stage placement (`mnv3s-eca-lrelu-dil`) and avoids the dilated 14x14 depthwise convolutions that are
# slow in ONNX Runtime.
def _paper(name: str, **fixed: Any) -> ModelRecord:
    return table_record(name, eca=True, lrelu=True, dil=True, family="design", **fixed)


register(_paper("hypodermnet-dil7", aliases=("hypodermnet",), dilation_blocks=(9, 10)))
register(_paper("hypodermnet-dil1", dilation_blocks=(7,)))  # one 14x14 block only
register(_paper("hypodermnet-ecaproj", eca_placement="project"))  # ECA after the projection
register(_paper("hypodermnet-slope0.1", leaky_slope=0.1))
# torchvision baselines, with their ImageNet weights
register(baseline_record(tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1))
register(baseline_record(tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2))
register(baseline_record(tvm.mobilenet_v2, tvm.MobileNet_V2_Weights.IMAGENET1K_V2))
register(baseline_record(tvm.mobilenet_v3_large, tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V2))
register(baseline_record(tvm.shufflenet_v2_x1_0, tvm.ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1))
register(baseline_record(tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights.IMAGENET1K_V1))
register(baseline_record(tvm.densenet121, tvm.DenseNet121_Weights.IMAGENET1K_V1))


def list_models(include_aliases: bool = True, family: Family | None = None) -> list[str]:
    """The registered names (of one `family` if given), in registration order; the aliases last."""
    names = [n for n, r in MODELS.items() if family is None or r.family == family]
    aliases = [a for a, n in _ALIASES.items() if n in names]
    return names + aliases if include_aliases else names


def model_record(name: str) -> ModelRecord:
    """The record of a name or alias; a UsageError listing the valid names for any other."""
    record = MODELS.get(_ALIASES.get(name, name))
    if record is None:
        raise UsageError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return record


def canonical_name(name: str) -> str:
    return model_record(name).name


def aliases_of(name: str) -> tuple[str, ...]:
    return model_record(name).aliases


def is_table_model(name: str) -> bool:
    """True for the MobileNetV3-Small family built from our table (variants and design variants)."""
    return model_record(name).spec is not None


def mnv3s_spec(name: str, **options: Any) -> MobileNetV3Spec:
    """The architecture table of a named `mnv3s*` variant or design variant."""
    record = model_record(name)
    if record.spec is None:
        raise ValueError(f"{record.name} is a torchvision baseline, not built from the MobileNetV3-Small table")
    return record.spec(**options)


def _check_options(record: ModelRecord, options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - record.options)
    if unknown:
        raise TypeError(f"model {record.name!r} does not take option(s) {', '.join(unknown)}; "
                        f"it takes: {', '.join(sorted(record.options)) or 'none'}")


def create_model(name: str, num_classes: int = 1000, pretrained: str | os.PathLike | None = None,
                 **options: Any) -> nn.Module:
    """Build a model by name.

    `pretrained` is a path to a torchvision-format state dict, or "imagenet" for torchvision's
    weights file in the local torch hub cache (never downloaded here). Tensors whose name and shape
    match are loaded; the rest are reported in `model.pretrained_report` (and logged).
    """
    record = model_record(name)
    name = record.name
    _check_options(record, options)
    model = record.build(num_classes, **options)
    if pretrained is not None:
        state = _read_state_dict(pretrained, name)
        report = load_matching(model, state)
        report.zeroed = zero_fresh_attention(model, report)
        model.pretrained_report = report  # type: ignore[assignment]
        log.info("%s: %s", name, report)
        if not report.loaded:
            raise PretrainedMismatchError(
                f"the weights file {Path(str(pretrained)).name} has no tensor that fits {name} (it holds weights of "
                "another architecture); give that model's own weights, or train it from scratch (--pretrained none)")
    return model


class PretrainedMismatchError(HypodermError, ValueError):
    """A pretrained weights file of which no tensor fits the model (e.g. MobileNetV3 weights for resnet50)."""


class WeightsFileError(HypodermError, ValueError):
    """A pretrained weights file that is not a readable PyTorch state dict."""


class WeightsNotFoundError(HypodermError, FileNotFoundError):
    """The pretrained weights file (or torchvision's ImageNet file in the torch hub cache) is not there."""


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
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(model_record(name).imagenet_weights.url)


def _read_state_dict(pretrained: str | os.PathLike, name: str) -> dict[str, torch.Tensor]:
    path = imagenet_weights_path(name) if str(pretrained) == "imagenet" else Path(pretrained)
    if not path.is_file():
        hint = (" Put torchvision's file there (no download is attempted)." if str(pretrained) == "imagenet" else "")
        raise WeightsNotFoundError(f"pretrained weights not found: {path}.{hint}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise WeightsFileError(f"{path} is not a readable PyTorch state dict ({torch_load_failure(e)})") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a hypoderm checkpoint or a Lightning-style file
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsFileError(f"{path} does not hold a state dict (name -> tensor)")
    return obj


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the model (e.g. SE -> ECA)
    missing: list[str] = field(default_factory=list)  # in the model, not loaded: initialised fresh
    zeroed: list[str] = field(default_factory=list)  # fresh ECA kernels set to 0 (see zero_fresh_attention)

    def __str__(self) -> str:
        parts = [f"loaded {len(self.loaded)} tensors"]
        if self.shape_mismatch:
            parts.append("skipped (shape differs): " + ", ".join(f"{k} {s}->{d}" for k, s, d in self.shape_mismatch))
        if self.unexpected:
            parts.append(f"skipped (not in model): {len(self.unexpected)} e.g. {', '.join(self.unexpected[:4])}")
        if self.missing:
            parts.append(f"initialised fresh: {len(self.missing)} e.g. {', '.join(self.missing[:4])}")
        if self.zeroed:
            parts.append(f"ECA kernels started at zero (every channel gate 0.5): {len(self.zeroed)}")
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


def zero_fresh_attention(model: nn.Module, report: LoadReport) -> list[str]:
    """Start every ECA kernel that the weights file did not fill (ECA replaces SE blocks, which have no 1-D
    kernel to load) at zero: each channel's gate is then sigmoid(0) = 0.5, a uniform scale that the batch norm
    after the projection absorbs in training (ECA after the depthwise conv, the zoo's placement; placed after the
    projection, `hypodermnet-ecaproj`, the block's branch starts at half scale), so the pretrained trunk starts
    close to its ImageNet function with no attention, and the gates start where the sigmoid learns fastest.
    PyTorch's random kernel instead gives random, often saturated gates in every block
    (benchmarks/comparison/README.md measures both starts).
    Returns the names of the zeroed tensors."""
    fresh = set(report.missing)
    zeroed = []
    for name, module in model.named_modules():
        key = f"{name}.conv.weight"
        if isinstance(module, ECA) and key in fresh:
            with torch.no_grad():
                module.conv.weight.zero_()
            zeroed.append(key)
    return zeroed


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
