"""`hypoderm models`: every model with its parameter count (hypoderm.models), counted with the bundled
model's number of classes unless `--num-classes` says otherwise; the header says which."""

from __future__ import annotations

import argparse
import json
from importlib import resources

from hypoderm.errors import UsageError

FALLBACK_CLASSES = 2  # when the bundled model's metadata is missing (a source tree without the assets)


def bundled_class_count() -> int | None:
    """How many classes the bundled model has (src/hypoderm/assets/model.json); None without a readable one.
    Read as JSON, so `hypoderm models --help` stays torch- and ONNX-free."""
    try:
        md = json.loads((resources.files("hypoderm") / "assets" / "model.json").read_text(encoding="utf-8"))
        return len(md["class_names"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def add_arguments(p: argparse.ArgumentParser) -> None:
    bundled = bundled_class_count()
    p.add_argument("--num-classes", "--classes", dest="num_classes", type=int, default=bundled or FALLBACK_CLASSES,
                   help="classifier size used for the parameter count (default %(default)s: "
                        + ("the bundled model's)" if bundled else "no bundled model found)"))


def run(args: argparse.Namespace) -> int:
    from hypoderm.models.registry import MODELS, count_parameters, create_model

    if args.num_classes < 1:
        raise UsageError("--num-classes must be >= 1")
    whose = " (the bundled model's)" if args.num_classes == bundled_class_count() else ""
    print(f"Parameters counted with a {args.num_classes}-class head{whose}; --num-classes N counts another.")
    print(f"{'model':<22} {'family':<24} {'params':>12}")
    for name, record in MODELS.items():
        alias = f"  alias: {', '.join(record.aliases)}" if record.aliases else ""
        n = count_parameters(create_model(name, num_classes=args.num_classes))
        print(f"{name:<22} {record.family_label:<24} {n:>12,}{alias}")
    return 0
