"""`hypoderm cv`: k-fold cross-validation of one model (hypoderm.engine.cv)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hypoderm.commands.options import add_train_arguments, config_from_args
from hypoderm.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser, cv=True)
    parser.add_argument("--only-folds", default=None, help="comma-separated folds to run (default: all)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")


def run(args: argparse.Namespace) -> int:
    from hypoderm.engine.cv import run_cv

    cfg = config_from_args(args)
    out = args.out or f"runs/cv-{cfg.model}"
    try:
        folds = [int(x) for x in args.only_folds.split(",")] if args.only_folds else None
    except ValueError:
        raise UsageError(f"--only-folds must be comma-separated fold numbers, got {args.only_folds!r}") from None
    summary = run_cv(cfg.with_(out=out), out, folds=folds, n_bootstrap=args.bootstrap)
    if summary:
        print(Path(out, "summary.md").read_text())
        print(f"summary written to {Path(out, 'summary.md')} and {Path(out, 'summary.json')} (pooled test "
              f"predictions: {Path(out, 'pooled_test_predictions.npz')}; each fold: {Path(out, 'fold0')}/ ...)")
    return 0
