"""The options of the commands that run PyTorch (`models`, `bench`, `train`, `evaluate`, `cv`, `compare`).

They live here, apart from the commands' modules, because those modules import torch (4-6 s on a laptop): the
CLI builds a command's parser from this torch-free module, so `hypoderm train --help` or a mistyped option
answers at once, and imports the command's module only to run it (hypoderm.cli; tests/test_cli.py checks
that no `--help` imports torch).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from hypoderm.engine.config import add_train_arguments


def models_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-classes", type=int, default=2, help="classifier size used for the count")


def bench_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="mnv3s,hypodermnet,resnet50",
                   help="comma-separated model names or presets (paper, ablation, all)")
    p.add_argument("--size", type=int, default=224, help="input side in pixels")
    p.add_argument("--num-classes", type=int, default=2)
    p.add_argument("--threads", default="1",
                   help="intra-op threads for torch and ONNX Runtime: a number, 'all', or a list like '1,all'")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    p.add_argument("--onnx-file", action="append", type=Path, default=[],
                   help="also time an exported .onnx artefact (repeatable), e.g. fp32 and INT8 exports")
    p.add_argument("--json", type=Path, help="write the full result as JSON")
    p.add_argument("--csv", type=Path, help="write the table as CSV")


def evaluate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a hypoderm checkpoint (best.pt)")
    parser.add_argument("--data", default=None, help="data source; alone: evaluate every image of this folder/CSV")
    parser.add_argument("--split", default=None, help="split file (default: the checkpoint's own split)")
    parser.add_argument("--fold", type=int, default=None, help="test fold (default: the training fold)")
    parser.add_argument("--part", choices=["test", "val"], default="test")
    parser.add_argument("--out", default=None, help="output folder (default: next to the checkpoint)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    parser.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping")
    parser.add_argument("--group-regex", default=None)
    parser.add_argument("--no-plots", dest="plots", action="store_false")


def cv_options(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser, cv=True)
    parser.add_argument("--only-folds", default=None, help="comma-separated folds to run (default: all)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")


def compare_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=None, help="comma-separated model names (or presets paper, ablation)")
    p.add_argument("--preset", choices=["paper", "ablation", "design"], help="paper: hypodermnet vs mnv3s and 5 CNNs; "
                   "ablation: the 8 mnv3s* variants; design: hypodermnet's open design choices")
    p.add_argument("--out", required=True, type=Path, help="study directory (re-run to resume)")
    # every training flag of `hypoderm cv` (recipe, balance, label smoothing, EMA, abstain target, ...), so that
    # a study runs the recipe it says; --hold-out-by adds the held-out protocol for every model
    add_train_arguments(p, study=True)
    p.add_argument("--reference", default="hypodermnet", help="model of the paired comparison")
    p.add_argument("--latency-size", type=int, default=224, help="input size for the latency/FLOPs columns")
    p.add_argument("--threads", type=int, default=1, help="threads for the latency measurement")
    p.add_argument("--runs", type=int, default=30, help="timed runs per model")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")


# command module -> the function adding its options (hypoderm.cli uses the module's own add_arguments otherwise)
OPTIONS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "hypoderm.models.listing": models_options,
    "hypoderm.bench": bench_options,
    "hypoderm.engine.train": add_train_arguments,
    "hypoderm.engine.evaluate": evaluate_options,
    "hypoderm.engine.cv": cv_options,
    "hypoderm.compare": compare_options,
}
