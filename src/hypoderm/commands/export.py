"""`hypoderm export`: a checkpoint to ONNX (fp32 / INT8) with its metadata (hypoderm.export.export_bundle).

The options are ExportOptions' fields, with its defaults (hypoderm.commands.options.add_export_arguments)."""

from __future__ import annotations

import argparse
import sys

from hypoderm.commands.options import add_export_arguments as add_arguments

__all__ = ["add_arguments", "run"]


def run(args: argparse.Namespace) -> int:
    from hypoderm.export import ExportOptions, export_bundle

    # an ExportError carries its exit code (2: bad input; 1: a broken checkpoint refused, a failed parity check)
    export_bundle(ExportOptions(**vars(args)), log=print, warn=lambda message: print(message, file=sys.stderr))
    return 0
