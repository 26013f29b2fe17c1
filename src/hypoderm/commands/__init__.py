"""The `hypoderm` commands: one module per command, each with

    add_arguments(parser: argparse.ArgumentParser) -> None   its options (torch-free, so every --help is fast)
    run(args: argparse.Namespace) -> int                     calls the library, prints, returns the exit code

hypoderm.cli imports only the module of the command being run; a command module imports the library (and with
it torch, where the library needs it) inside `run`, never at the top.
"""

import argparse
from pathlib import Path


def path_arg(text: str) -> Path:
    """argparse type of a file or folder argument: an empty one (an unset shell variable: `predict "$PHOTO"`) would
    be Path("") = the current folder, searched whole; it is a usage error instead."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty path (an unset shell variable?): give a file or folder")
    return Path(text)


def path_text(text: str) -> str:
    """`path_arg` for the options that keep their path as text (the library's configs take str): the same refusal
    of an empty one, the text unchanged."""
    path_arg(text)
    return text
