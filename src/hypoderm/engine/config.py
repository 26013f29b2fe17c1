"""The one typed training configuration, saved inside every checkpoint."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from hypoderm.errors import HypodermError, UsageError

Balance = Literal["loss", "sampler", "none"]
# the environment variable naming the pretrained weights when --pretrained is not given (README, "Training")
WEIGHTS_ENV = "HYPODERM_IMAGENET_WEIGHTS"


class TrainError(HypodermError, RuntimeError):
    """A user-facing training problem (bad data, leaky split, missing checkpoint, ...).

    Lives here, next to the config every engine module imports, so that `cv` and `evaluate` can
    raise and catch it without importing the training loop."""

# Training recipes: which of the anti-shortcut augmentations (hypoderm.engine.augment) are on.
# "standard" is the whole-photo recipe the first bundled model used; "crop-tone" is the default, chosen
# by the measurements in benchmarks/shortcut/README.md.
RECIPES: dict[str, tuple[str, ...]] = {
    "standard": (),
    "crop": ("crop",),
    "crop-tone": ("crop", "tone"),
    "skin": ("crop", "tone", "degrade"),
}


# the settings that define an experiment: a resumed run or cv must not change them (the run-control flags, e.g.
# --workers, --device, --progress, may change)
PROTOCOL_KEYS = ("data", "model", "folds", "seed", "size", "epochs", "batch_size", "lr", "weight_decay",
                 "warmup_epochs", "label_smoothing", "balance", "recipe", "counterfactual", "counterfactual_p", "ema",
                 "ema_decay", "bn_momentum", "patience", "pretrained", "group_regex", "max_steps", "abstain_target",
                 "calibrate_closeups", "balance_by", "hold_out_by", "outlier_exposure",
                 "outliers", "outliers_exclude", "mixstyle", "mixstyle_alpha", "backbone_lr_scale",
                 "head_epochs", "freeze_bn")


@dataclass
class TrainConfig:
    """Everything that defines a training run (CLI flags map one-to-one onto these fields; the flags, with these
    defaults, are hypoderm.commands.options.add_train_arguments)."""

    data: str
    model: str = "hypodermnet"
    split: str | None = None  # split file; None: make one and write it into the run dir
    folds: int = 5
    seed: int = 0
    fold: int = 0
    size: int = 128  # the bundled recipe (benchmarks/origins/); the paper's 224 px is --size 224
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    # the learning rate of the trunk (everything but the classifier head: what ImageNet weights fill) as a share
    # of lr; the head keeps lr. 1 = one rate for the whole network (a start from scratch); below 1 for a
    # pretrained start, so that fine-tuning keeps what ImageNet taught (benchmarks/origins/README.md)
    backbone_lr_scale: float = 1.0
    # linear probing, then fine-tuning (LP-FT, Kumar et al. 2022): for the first head_epochs epochs only the
    # classifier head learns (the trunk's learning rate is 0), so that a fitted head, not a random one, sends the
    # gradients that then move the pretrained features; the trunk then warms up and decays over the epochs left
    head_epochs: int = 0
    # keep every batch norm in eval mode while training: it normalises with the pretrained start's (ImageNet's)
    # running statistics, which never change, instead of each batch's; its scale and shift still learn. For a
    # --pretrained start only (a fresh network has no statistics to keep)
    freeze_bn: bool = False
    label_smoothing: float = 0.1
    balance: Balance = "loss"
    # a manifest column (e.g. "origin"): draw every class equally often and, inside a class, each value of
    # the column in proportion to the square root of its photo count, so that no one source stands for a
    # class (engine.data.cell_balanced_sampler); implies balance "sampler"
    balance_by: str | None = None
    # a manifest column (e.g. "origin"): the split holds out one value per fold (data.splits.make_holdout_split)
    hold_out_by: str | None = None
    # augmentation recipe (RECIPES above); "crop-tone" = skin-guided close-up crops and a CIELAB skin-tone
    # shift against the photo-style shortcut (benchmarks/shortcut/); it needs long training (120 epochs there)
    recipe: str = "crop-tone"
    # "NORMAL:LESION" class names: paint synthetic depigmented macules on NORMAL crops (-> LESION) and call
    # lesion-free close-ups of LESION photos NORMAL (hypoderm.engine.augment.Counterfactual); None: off
    counterfactual: str | None = None
    counterfactual_p: float = 0.3
    # outlier exposure (hypoderm.engine.outliers): weight of the uniform-target loss on non-skin pictures mixed
    # into every batch (a quarter of its size); 0 = off
    outlier_exposure: float = 0.5  # the bundled recipe; 0 = off
    # real photographs that are not skin (a manifest CSV or an image folder, e.g. ../shared/data/nonskin/index.csv)
    # added to the outlier-exposure bank: each photo's centre square and close-ups (engine.outliers.real_bank)
    outliers: str | None = None
    # values of the outlier manifest's `origin` column left out of the bank (comma-separated): held-out checks
    outliers_exclude: str | None = None
    ema: bool = False
    # MixStyle (hypoderm.engine.mixstyle): probability per batch of mixing the early feature maps' per-image
    # statistics (a photo's style) between the batch's skin photos; 0 = off. Training only: the model is unchanged
    mixstyle: float = 0.0
    mixstyle_alpha: float = 0.1
    # BatchNorm momentum while training; None keeps the model's. torchvision's MobileNetV3 uses 0.01,
    # tuned for ImageNet-length runs: over a few hundred steps its running statistics barely leave
    # their initial values and eval-mode predictions collapse to one class.
    bn_momentum: float | None = 0.1
    ema_decay: float = 0.998
    patience: int = 12  # the bundled recipe
    workers: int = 0
    device: str = "auto"
    deterministic: bool = False
    amp: bool = True  # only ever used on CUDA
    pretrained: str | None = None
    out: str | None = None
    resume: bool = False
    strict: bool = False
    allow_leakage: bool = False
    allow_outside_paths: bool = False  # manifest rows outside the manifest's folder (data.dataset.load_index)
    group_regex: str | None = None
    final: bool = False  # train on every fold but the validation fold (no test fold): the model you ship
    max_steps: int | None = None  # per epoch, for tests and smoke runs
    stop_after_epoch: int | None = None  # debug: stop as if killed right after this epoch's last.pt
    cache_dir: str | None = None
    abstain_target: float = 0.85  # selective-prediction accuracy target on validation (the bundled recipe)
    # fit temperature and abstain threshold on the validation photos' close-ups too (recipes with "crop")
    calibrate_closeups: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise UsageError(f"recipe must be one of {', '.join(RECIPES)}; got {self.recipe!r}")
        if self.counterfactual is not None and len(self.counterfactual.split(":")) != 2:
            raise UsageError(f"counterfactual must be NORMAL:LESION (two class names), got {self.counterfactual!r}")
        if not 0.0 <= self.outlier_exposure <= 10.0:
            raise UsageError(f"outlier_exposure must be in [0, 10], got {self.outlier_exposure}")
        if self.outliers_exclude and not self.outliers:
            raise UsageError("outliers_exclude names origins of an --outliers manifest; give --outliers too")
        if self.outliers and self.outlier_exposure <= 0:
            raise UsageError("--outliers adds photos to the outlier-exposure bank; it needs --outlier-exposure > 0")
        if not 0.0 <= self.mixstyle <= 1.0:
            raise UsageError(f"mixstyle is a probability per batch in [0, 1], got {self.mixstyle}")
        if self.mixstyle_alpha <= 0:
            raise UsageError(f"mixstyle_alpha must be > 0, got {self.mixstyle_alpha}")
        if not 0.0 <= self.counterfactual_p <= 1.0:
            raise UsageError(f"counterfactual_p must be in [0, 1], got {self.counterfactual_p}")
        if self.balance not in ("loss", "sampler", "none"):
            raise UsageError(f"balance must be one of loss, sampler, none; got {self.balance!r}")
        if self.balance_by is not None:
            self.balance = "sampler"
        if self.folds < 3:
            raise UsageError(f"folds must be >= 3 (test fold + validation fold + training folds), got {self.folds}")
        if self.hold_out_by is None and not 0 <= self.fold < self.folds:
            raise UsageError(f"fold must be in 0..{self.folds - 1}, got {self.fold}")
        if self.fold < 0:
            raise UsageError(f"fold must be >= 0, got {self.fold}")
        if self.hold_out_by is not None and self.final:
            raise UsageError("--final trains the model to ship on every photo but the validation fold; it does not "
                             "combine with --hold-out-by (an evaluation protocol)")
        for name in ("epochs", "batch_size", "size"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not math.isfinite(self.lr):  # (NaN compares False with everything)
            raise UsageError(f"lr must be a number > 0, got {self.lr}")
        if not 0.0 < self.backbone_lr_scale <= 1.0:
            raise UsageError(f"backbone_lr_scale must be in (0, 1], got {self.backbone_lr_scale}")
        if not 0 <= self.head_epochs < self.epochs:
            raise UsageError(f"head_epochs must be in 0..epochs-1 ({self.epochs - 1}): the trunk needs at least one "
                             f"epoch; got {self.head_epochs}")
        if self.freeze_bn and self.pretrained is None:
            raise UsageError("freeze_bn keeps the pretrained start's batch-norm statistics; without pretrained "
                             "weights there are none to keep (give --pretrained PATH)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 < self.abstain_target <= 1.0:
            raise UsageError(f"abstain_target must be in (0, 1], got {self.abstain_target}")
        if self.bn_momentum is not None and self.bn_momentum < 0:
            self.bn_momentum = None
        if self.workers < 0:
            raise UsageError(f"workers must be >= 0, got {self.workers}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        # checkpoints from before a field existed ran without it: the standard recipe, no outlier exposure,
        # and the defaults of their time (224 px, abstain target 0.95)
        d = {"recipe": "standard", "outlier_exposure": 0.0, "size": 224, "abstain_target": 0.95, **d}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UsageError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**d)

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


def resolve_pretrained(value: str | None) -> str | None:
    """The weights `--pretrained` names: the flag's path; without the flag, $HYPODERM_IMAGENET_WEIGHTS when set (no
    other place is assumed); "none" (flag or variable) = from scratch. A UsageError for a file that is not there."""
    source = "--pretrained"
    if value is None:
        value, source = os.environ.get(WEIGHTS_ENV) or None, WEIGHTS_ENV
    if value is None or value.strip().lower() == "none":
        return None
    if value != "imagenet" and not os.path.isfile(value):
        raise UsageError(f"{source}: no weights file at {value} (give a state dict file, or 'none' to train from "
                         "scratch)")
    return value
