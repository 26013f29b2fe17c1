"""`hypoderm train`: train one model on an image folder or CSV manifest (hypoderm.engine.train)."""

from __future__ import annotations

import argparse

from hypoderm.commands.options import add_train_arguments, config_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from hypoderm.engine.train import train

    train(config_from_args(args))
    return 0
