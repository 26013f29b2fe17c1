"""`hypoderm train`: train one model on an image folder or CSV manifest (hypoderm.engine.train)."""

from __future__ import annotations

import argparse
import sys

from hypoderm.engine.config import add_train_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from hypoderm.checkpoint import CheckpointError
    from hypoderm.data.dataset import DatasetError
    from hypoderm.engine.config import TrainError, config_from_args
    from hypoderm.engine.train import train

    try:
        cfg = config_from_args(args)
        train(cfg)
    except (TrainError, DatasetError, CheckpointError, ValueError, TypeError, FileNotFoundError) as e:
        print(f"hypoderm train: error: {e}", file=sys.stderr)
        return 2
    return 0
