"""The one typed training configuration, saved inside every checkpoint."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from hypoderm.errors import HypodermError

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


@dataclass
class TrainConfig:
    """Everything that defines a training run (CLI flags map one-to-one onto these fields)."""

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
    ema: bool = False
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
            raise ValueError(f"recipe must be one of {', '.join(RECIPES)}; got {self.recipe!r}")
        if self.counterfactual is not None and len(self.counterfactual.split(":")) != 2:
            raise ValueError(f"counterfactual must be NORMAL:LESION (two class names), got {self.counterfactual!r}")
        if not 0.0 <= self.outlier_exposure <= 10.0:
            raise ValueError(f"outlier_exposure must be in [0, 10], got {self.outlier_exposure}")
        if not 0.0 <= self.counterfactual_p <= 1.0:
            raise ValueError(f"counterfactual_p must be in [0, 1], got {self.counterfactual_p}")
        if self.balance not in ("loss", "sampler", "none"):
            raise ValueError(f"balance must be one of loss, sampler, none; got {self.balance!r}")
        if self.balance_by is not None:
            self.balance = "sampler"
        if self.folds < 3:
            raise ValueError(f"folds must be >= 3 (test fold + validation fold + training folds), got {self.folds}")
        if self.hold_out_by is None and not 0 <= self.fold < self.folds:
            raise ValueError(f"fold must be in 0..{self.folds - 1}, got {self.fold}")
        if self.fold < 0:
            raise ValueError(f"fold must be >= 0, got {self.fold}")
        if self.hold_out_by is not None and self.final:
            raise ValueError("--final trains the model to ship on every photo but the validation fold; it does not "
                             "combine with --hold-out-by (an evaluation protocol)")
        for name in ("epochs", "batch_size", "size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 < self.abstain_target <= 1.0:
            raise ValueError(f"abstain_target must be in (0, 1], got {self.abstain_target}")
        if self.bn_momentum is not None and self.bn_momentum < 0:
            self.bn_momentum = None
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")

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
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**d)

    def with_(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)


def add_train_arguments(parser: argparse.ArgumentParser, *, cv: bool = False, study: bool = False) -> None:
    """The training flags shared by `hypoderm train`, `hypoderm cv` (`cv`: no --fold / --final) and `hypoderm
    compare` (`study`: also no --model, --out, --resume: the study names its models and its folder)."""
    d = TrainConfig(data="")
    p = parser
    cv = cv or study
    p.add_argument("--data", required=True, help="ImageFolder directory or CSV manifest")
    if not study:
        p.add_argument("--model", default=d.model, help="registry model name (see `hypoderm models`)")
    p.add_argument("--split", default=None, help="split file from `hypoderm data split` (default: make one)")
    p.add_argument("--folds", type=int, default=d.folds,
                   help="folds when making a split (default %(default)s); with --hold-out-by, validation is 1/folds")
    p.add_argument("--hold-out-by", default=None, metavar="COLUMN",
                   help="held-out evaluation: one fold per value of this manifest column (e.g. origin), trained on "
                        "the other values and tested on it")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    if not cv:
        p.add_argument("--fold", type=int, default=d.fold,
                       help="test fold; validation is fold+1 mod k (held-out splits: the value's index)")
    p.add_argument("--size", type=int, default=d.size, help="input size in px (default %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="training epochs (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate of AdamW (default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="(default %(default)s)")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs, help="(default %(default)s)")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="(default %(default)s)")
    p.add_argument("--balance", choices=["loss", "sampler", "none"], default=d.balance,
                   help="class-weighted loss, balanced sampler, or neither (default %(default)s)")
    p.add_argument("--balance-by", default=None, metavar="COLUMN",
                   help="class- and source-balanced sampling: every class equally often and, within a class, each "
                        "value of this manifest column (e.g. origin) by the square root of its count (implies "
                        "--balance sampler)")
    p.add_argument("--recipe", choices=list(RECIPES), default=d.recipe,
                   help="augmentation recipe: crop-tone = close-up crops on skin + skin-tone shift against the "
                   "photo-style shortcut (train long: 120 epochs on ~200 photos); skin = crop-tone + JPEG/resolution "
                   "degradation; crop = close-ups only; standard = whole-photo crops (default %(default)s)")
    p.add_argument("--counterfactual", default=None, metavar="NORMAL:LESION",
                   help="class names of normal skin and of a depigmented lesion (e.g. normal_skin:vitiligo): paint "
                   "synthetic depigmented macules on normal crops and relabel lesion-free lesion crops")
    p.add_argument("--counterfactual-p", type=float, default=d.counterfactual_p,
                   help="share of normal crops that get a synthetic macule (default %(default)s)")
    p.add_argument("--outlier-exposure", type=float, default=d.outlier_exposure, metavar="WEIGHT",
                   help="mix pictures that are not skin (synthetic textures, sample photos of installed packages) into "
                        "every batch with a uniform target, weighted by WEIGHT (default %(default)s, the bundled "
                        "recipe; 0 = off)")
    p.add_argument("--ema", action="store_true", help="keep an exponential moving average of the weights")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="(default %(default)s)")
    p.add_argument("--bn-momentum", type=float, default=d.bn_momentum,
                   help="BatchNorm momentum while training (default %(default)s; the model's own is kept if < 0)")
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping on val macro-F1")
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=d.amp, help="mixed precision on CUDA")
    p.add_argument("--pretrained", default=None, metavar="PATH",
                   help=f"start from these weights (a state dict, e.g. the ImageNet MobileNetV3-Small file); default: "
                        f"${WEIGHTS_ENV} when set, else from scratch; 'none' = from scratch")
    if not study:
        p.add_argument("--out", default=None, help="run directory (default runs/MODEL-fold-K)")
        p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    p.add_argument("--allow-leakage", action="store_true", help="train even if the split leaks groups/duplicates")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="read CSV manifest rows whose file lies outside the manifest's folder (../x.jpg, an absolute "
                        "path, a symbolic link leading out); refused by default, listed when allowed")
    p.add_argument("--group-regex", default=None, help="group = first capture group of this regex on file names")
    if not cv:
        p.add_argument("--final", action="store_true",
                       help="the model to ship: train on every fold except the validation fold (fold+1); "
                            "no test fold, so report cross-validated numbers from `hypoderm cv`")
    p.add_argument("--max-steps", type=int, default=None, help="at most N steps per epoch (smoke tests)")
    p.add_argument("--stop-after-epoch", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default=None, help="on-disk decoded image cache (default: memory only)")
    p.add_argument("--abstain-target", type=float, default=d.abstain_target,
                   help="validation accuracy the abstain threshold must reach on kept samples (default %(default)s)")
    p.add_argument("--no-calibrate-closeups", dest="calibrate_closeups", action="store_false",
                   help="fit temperature and abstain threshold on validation centre crops only (default with a "
                   "close-up recipe: centre crops and close-ups of the validation photos)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def resolve_pretrained(value: str | None) -> str | None:
    """The weights `--pretrained` names: the flag's path; without the flag, $HYPODERM_IMAGENET_WEIGHTS when set (no
    other place is assumed); "none" (flag or variable) = from scratch. ValueError for a file that is not there."""
    source = "--pretrained"
    if value is None:
        value, source = os.environ.get(WEIGHTS_ENV) or None, WEIGHTS_ENV
    if value is None or value.strip().lower() == "none":
        return None
    if value != "imagenet" and not os.path.isfile(value):
        raise ValueError(f"{source}: no weights file at {value} (give a state dict file, or 'none' to train from "
                         "scratch)")
    return value


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    # paths as text: the config is written as JSON (cv_config.json, checkpoints)
    values: dict[str, Any] = {k: str(v) if isinstance(v, os.PathLike) else v
                              for k, v in vars(args).items() if k in known}
    if "pretrained" in values:
        values["pretrained"] = resolve_pretrained(values["pretrained"])
    return TrainConfig(**values)
