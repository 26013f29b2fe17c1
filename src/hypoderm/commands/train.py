"""`hypoderm train`: train one model on an image folder or CSV manifest (hypoderm.engine.train)."""

from __future__ import annotations

import argparse

from hypoderm.commands.options import add_train_arguments, config_from_args
from hypoderm.errors import user_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from hypoderm.engine.train import train

    with user_errors(ValueError, TypeError, FileNotFoundError):
        train(config_from_args(args))
    return 0
