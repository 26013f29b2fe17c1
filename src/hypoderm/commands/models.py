"""`hypoderm models`: every model with its parameter count (hypoderm.models)."""

from __future__ import annotations

import argparse

from hypoderm.errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-classes", type=int, default=2, help="classifier size used for the count")


def run(args: argparse.Namespace) -> int:
    from hypoderm.models.registry import (
        ALIASES,
        BASELINES,
        DESIGN_VARIANTS,
        count_parameters,
        create_model,
        list_models,
    )

    if args.num_classes < 1:
        raise UsageError("--num-classes must be >= 1")
    reverse_alias = {v: k for k, v in ALIASES.items()}
    print(f"{'model':<22} {'family':<24} {'params':>12}   (num_classes={args.num_classes})")
    for name in list_models(include_aliases=False):
        family = ("torchvision baseline" if name in BASELINES else
                  "design variant" if name in DESIGN_VARIANTS else "MobileNetV3-Small variant")
        alias = f"  alias: {reverse_alias[name]}" if name in reverse_alias else ""
        n = count_parameters(create_model(name, num_classes=args.num_classes))
        print(f"{name:<22} {family:<24} {n:>12,}{alias}")
    return 0
