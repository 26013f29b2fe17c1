"""The options of the commands that share them, read from the library's dataclasses so that each default is
written once: the training flags of `train`, `cv` and `compare` (TrainConfig's fields) and the flags of `export`
(ExportOptions' fields). Torch-free (TrainConfig and ExportOptions live in torch-free modules), so every --help
answers at once."""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING, fields
from typing import Any, get_args

from hypoderm.commands import path_arg, path_text
from hypoderm.engine.config import RECIPES, WEIGHTS_ENV, Balance, TrainConfig, resolve_pretrained
from hypoderm.export.bundle import ExportOptions


def _defaults(cls: type) -> dict[str, Any]:
    """field name -> default of a dataclass (fields without one are left out)."""
    return {f.name: f.default for f in fields(cls) if f.default is not MISSING}


def add_train_arguments(parser: argparse.ArgumentParser, *, cv: bool = False, study: bool = False) -> None:
    """The training flags shared by `hypoderm train`, `hypoderm cv` (`cv`: no --fold / --final) and `hypoderm
    compare` (`study`: also no --model, --out, --resume: the study names its models and its folder)."""
    d = TrainConfig(data="")
    p = parser
    cv = cv or study
    p.add_argument("--data", required=True, type=path_text, help="ImageFolder directory or CSV manifest")
    if not study:
        p.add_argument("--model", default=d.model, help="registry model name (see `hypoderm models`)")
    p.add_argument("--split", default=d.split, type=path_text,
                   help="split file from `hypoderm data split` (default: make one)")
    p.add_argument("--folds", type=int, default=d.folds,
                   help="folds when making a split (default %(default)s); with --hold-out-by, validation is 1/folds")
    p.add_argument("--hold-out-by", default=d.hold_out_by, metavar="COLUMN",
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
    p.add_argument("--backbone-lr-scale", type=float, default=d.backbone_lr_scale, metavar="SCALE",
                   help="learning rate of everything but the classifier head, as a share of --lr (e.g. 0.1 when "
                        "fine-tuning --pretrained weights; default %(default)s: one rate for all)")
    p.add_argument("--head-epochs", type=int, default=d.head_epochs, metavar="N",
                   help="train only the classifier head for the first N epochs (the trunk's rate is 0), then "
                        "everything (linear probing, then fine-tuning: for a --pretrained start; default "
                        "%(default)s)")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep every batch norm in eval mode while training, on the --pretrained start's running "
                        "statistics (its scale and shift still learn)")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="(default %(default)s)")
    p.add_argument("--balance", choices=list(get_args(Balance)), default=d.balance,
                   help="class-weighted loss, balanced sampler, or neither (default %(default)s)")
    p.add_argument("--balance-by", default=d.balance_by, metavar="COLUMN",
                   help="class- and source-balanced sampling: every class equally often and, within a class, each "
                        "value of this manifest column (e.g. origin) by the square root of its count (implies "
                        "--balance sampler)")
    p.add_argument("--recipe", choices=list(RECIPES), default=d.recipe,
                   help="augmentation recipe: crop-tone = close-up crops on skin + skin-tone shift against the "
                   "photo-style shortcut (train long: 120 epochs on ~200 photos); skin = crop-tone + JPEG/resolution "
                   "degradation; crop = close-ups only; standard = whole-photo crops (default %(default)s)")
    p.add_argument("--counterfactual", default=d.counterfactual, metavar="NORMAL:LESION",
                   help="class names of normal skin and of a depigmented lesion (e.g. normal_skin:vitiligo): paint "
                   "synthetic depigmented macules on normal crops and relabel lesion-free lesion crops")
    p.add_argument("--counterfactual-p", type=float, default=d.counterfactual_p,
                   help="share of normal crops that get a synthetic macule (default %(default)s)")
    p.add_argument("--outlier-exposure", type=float, default=d.outlier_exposure, metavar="WEIGHT",
                   help="mix pictures that are not skin (synthetic textures, sample photos of installed packages) into "
                        "every batch with a uniform target, weighted by WEIGHT (default %(default)s, the bundled "
                        "recipe; 0 = off)")
    p.add_argument("--outliers", default=d.outliers, type=path_text, metavar="PATH",
                   help="real photographs that are not skin (a manifest CSV with path,label[,origin] or an image "
                        "folder; e.g. ../shared/data/nonskin/index.csv) added to the outlier-exposure bank: each "
                        "photo's centre square and two close-ups")
    p.add_argument("--outliers-exclude", default=d.outliers_exclude, metavar="ORIGIN[,ORIGIN]",
                   help="leave these values of the outlier manifest's origin column out of the bank (to test on them)")
    p.add_argument("--mixstyle", type=float, default=d.mixstyle, metavar="P",
                   help="MixStyle: with probability P per batch, mix the early feature maps' per-photo mean and "
                        "spread (the photo's style) between the batch's skin photos, against learning the source "
                        "from its style; training only, the model is unchanged (default %(default)s = off)")
    p.add_argument("--mixstyle-alpha", type=float, default=d.mixstyle_alpha, metavar="ALPHA",
                   help="MixStyle weights drawn from Beta(ALPHA, ALPHA) (default %(default)s)")
    p.add_argument("--ema", action="store_true", help="keep an exponential moving average of the weights")
    p.add_argument("--ema-decay", type=float, default=d.ema_decay, help="(default %(default)s)")
    p.add_argument("--bn-momentum", type=float, default=d.bn_momentum,
                   help="BatchNorm momentum while training (default %(default)s; the model's own is kept if < 0)")
    p.add_argument("--patience", type=int, default=d.patience, help="early stopping on val macro-F1")
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=d.amp, help="mixed precision on CUDA")
    p.add_argument("--pretrained", default=d.pretrained, type=path_text, metavar="PATH",
                   help=f"start from these weights (a state dict, e.g. the ImageNet MobileNetV3-Small file); default: "
                        f"${WEIGHTS_ENV} when set, else from scratch; 'none' = from scratch")
    if not study:
        p.add_argument("--out", default=d.out, type=path_text,
                       help=f"run directory (default {'runs/cv-MODEL' if cv else 'runs/MODEL-fold-K'})")
        p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    p.add_argument("--allow-leakage", action="store_true", help="train even if the split leaks groups/duplicates")
    p.add_argument("--allow-outside-paths", action="store_true",
                   help="read CSV manifest rows whose file lies outside the manifest's folder (../x.jpg, an absolute "
                        "path, a symbolic link leading out); refused by default, listed when allowed")
    p.add_argument("--group-regex", default=d.group_regex,
                   help="group = first capture group of this regex on file names")
    if not cv:
        p.add_argument("--final", action="store_true",
                       help="the model to ship: train on every fold except the validation fold (fold+1); "
                            "no test fold, so report cross-validated numbers from `hypoderm cv`")
    p.add_argument("--max-steps", type=int, default=d.max_steps, help="at most N steps per epoch (smoke tests)")
    p.add_argument("--stop-after-epoch", type=int, default=d.stop_after_epoch, help=argparse.SUPPRESS)
    p.add_argument("--cache-dir", default=d.cache_dir, type=path_text,
                   help="on-disk decoded image cache (default: memory only)")
    p.add_argument("--abstain-target", type=float, default=d.abstain_target,
                   help="validation accuracy the abstain threshold must reach on kept samples (default %(default)s)")
    p.add_argument("--no-calibrate-closeups", dest="calibrate_closeups", action="store_false",
                   help="fit temperature and abstain threshold on validation centre crops only (default with a "
                   "close-up recipe: centre crops and close-ups of the validation photos)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `hypoderm export`: one per ExportOptions field, with its default."""
    d = _defaults(ExportOptions)
    parser.add_argument("checkpoint", type=path_arg, help="a hypoderm .pt checkpoint (best.pt)")
    parser.add_argument("--out", type=path_arg, required=True,
                        help="output path: model.onnx (or model.ts.pt for torchscript)")
    parser.add_argument("--format", choices=("onnx", "torchscript"), default=d["format"],
                        help="onnx: ONNX Runtime / Mobile (Android, iOS) / Web (browsers); "
                             "torchscript: LibTorch / PyTorch Mobile")
    parser.add_argument("--int8", action="store_true", help="also write an INT8 (QDQ) model, needs --calibration")
    parser.add_argument("--calibration", type=path_arg, default=d["calibration"],
                        help="real images for INT8 calibration, the parity check and fitting OOD thresholds: a "
                             "folder (sub-folders named like the classes give labels) or the same CSV manifest "
                             "`train` takes (path,label[,...])")
    parser.add_argument("--eval", type=path_arg, dest="eval_dir", default=d["eval_dir"],
                        help="labelled folder or CSV manifest to report fp32 vs INT8 accuracy / macro-F1 "
                             "(default: --calibration)")
    parser.add_argument("--int8-gradcam", action="store_true",
                        help="keep the Grad-CAM outputs in the INT8 model (their branch stays fp32 and shares the "
                             "INT8 head weight; the report then compares the maps)")
    parser.add_argument("--int8-weights", action="store_true",
                        help="also write <stem>.int8w.onnx: Conv/Gemm/MatMul weights stored as INT8 per channel, "
                             "dequantised once when the session is created (fp32 compute, fp32 speed, ~1/3.5 of the "
                             "file); compared with fp32 like --int8 when --eval or --calibration gives images")
    parser.add_argument("--eval-closeups", type=int, default=d["eval_closeups"], metavar="N",
                        help="with --int8 / --int8-weights: also compare fp32 and INT8 on N seeded close-ups of each "
                             "evaluation photo (like the square a user frames in the app; "
                             "hypoderm.engine.styleshift.closeups)")
    parser.add_argument("--opset", type=int, default=d["opset"], help="ONNX opset (>= 17)")
    parser.add_argument("--no-simplify", action="store_true", help="skip onnxslim")
    parser.add_argument("--max-logit-floor", action=argparse.BooleanOptionalAction, default=d["max_logit_floor"],
                        help="withhold the answer when the largest logit is below the --ood-quantile of the "
                        "calibration photos' (default off, as in the bundled model: in a 15-epoch run it withheld 14 "
                        "of 311 real photos; the not-skin gate and the abstain threshold do that job)")
    parser.add_argument("--ood-quantile", type=float, default=d["ood_quantile"],
                        help="max-logit OOD floor = this quantile of calibration images' max logits")
    parser.add_argument("--max-images", type=int, default=d["max_images"],
                        help="use at most this many calibration images")
    parser.add_argument("--force", action="store_true",
                        help="export a checkpoint that failed the quality checks (collapsed predictions, macro-F1 "
                             "at chance, temperature at its bound); the model is marked as such in its metadata, "
                             "and predict and serve show the mark")
    parser.add_argument("--no-skin-check", action="store_true",
                        help="leave out the learned skin check (assets/skin_check.onnx, about 1 MB: ImageNet "
                             "MobileNetV3-Small blocks fitted on real skin against real non-skin photos) that every "
                             "exported model gets in its graph; the statistics gate alone then refuses non-skin")
    parser.add_argument("--answer-threshold", action="append", metavar="CLASS=P",
                        help="answer CLASS only when its probability reaches P, a higher bar than the abstain "
                             "threshold (below it: 'uncertain, see a dermatologist'); for an answer whose false alarm "
                             "costs more, e.g. vitiligo=0.8 (the bundled model); repeat for several classes")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed training flags (the other flags of the command are left out)."""
    known = {f.name for f in fields(TrainConfig)}
    # paths as text: the config is written as JSON (cv_config.json, checkpoints)
    values: dict[str, Any] = {k: str(v) if isinstance(v, os.PathLike) else v
                              for k, v in vars(args).items() if k in known}
    if "pretrained" in values:
        values["pretrained"] = resolve_pretrained(values["pretrained"])
    return TrainConfig(**values)
