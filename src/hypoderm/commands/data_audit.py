"""`hypoderm data audit`: counts, sizes, unreadable files, duplicates, leakage, the shortcut baseline
(hypoderm.data.audit)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from hypoderm.commands import path_text
from hypoderm.data.splits import NEAR_DUPLICATE_THRESHOLD
from hypoderm.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=path_text, help="ImageFolder directory or CSV manifest")
    parser.add_argument("--split", default=None, type=path_text, help="split file to check for leakage across folds")
    parser.add_argument("--allow-outside-paths", action="store_true",
                        help="read CSV manifest rows whose file lies outside the manifest's folder (refused by "
                             "default, listed when allowed)")
    parser.add_argument("--out", default="audit", type=path_text,
                        help="folder for audit.md and audit.csv (default ./audit)")
    parser.add_argument("--near-threshold", type=int, default=NEAR_DUPLICATE_THRESHOLD,
                        help="max phash Hamming distance (of 64 bits) for near-duplicates (default 4)")
    parser.add_argument("--no-shortcut", dest="shortcut", action="store_false",
                        help="skip the shortcut audit (classifiers on trivial photo features)")
    parser.add_argument("--folds", type=int, default=5,
                        help="folds of the fresh split the shortcut audit makes when no --split is given (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of that split and of the classifiers (default 0)")
    parser.add_argument("--cnn-macro-f1", type=float, default=None,
                        help="a CNN's cross-validated macro-F1: warn when the shortcut baseline comes within 0.10")


def run(args: argparse.Namespace) -> int:
    from hypoderm.data.audit import audit
    from hypoderm.data.dataset import load_index
    from hypoderm.data.splits import Split

    t0 = time.perf_counter()
    if args.cnn_macro_f1 is not None and not 0.0 <= args.cnn_macro_f1 <= 1.0:
        raise UsageError(f"--cnn-macro-f1 must be in 0..1, got {args.cnn_macro_f1}")
    index = load_index(args.source, allow_outside_paths=args.allow_outside_paths)
    split = Split.load(args.split) if args.split else None
    report = audit(index, split=split, near_threshold=args.near_threshold, shortcut=args.shortcut, folds=args.folds,
                   seed=args.seed)
    report.split_path = args.split
    report.cnn_macro_f1 = args.cnn_macro_f1
    try:
        md_path, csv_path = report.write(args.out)
    except OSError as e:
        raise UsageError(f"cannot write to {args.out}: {e.strerror or e}") from e
    print(report.summary())
    for f in report.unreadable + report.leaks:
        print(f"  {f}")
    extra = f" and {Path(args.out) / 'shortcut.csv'}" if report.shortcut is not None else ""
    print(f"wrote {md_path}, {csv_path}{extra} in {time.perf_counter() - t0:.1f} s")
    return 0
