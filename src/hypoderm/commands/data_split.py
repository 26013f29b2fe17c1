"""`hypoderm data split`: a stratified, group-aware split file (hypoderm.data.splits)."""

from __future__ import annotations

import argparse
import sys
import time

from hypoderm.commands import path_text
from hypoderm.data.splits import NEAR_DUPLICATE_THRESHOLD
from hypoderm.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=path_text,
                        help="ImageFolder directory or CSV manifest (path,label[,group][,skin_type][,origin][,...])")
    parser.add_argument("--folds", type=int, default=5, help="number of folds k (>= 3; default 5)")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed (same seed -> same file; default 0)")
    parser.add_argument("--group-regex", default=None,
                        help="regex on the file name; group = first capture group (e.g. '^(P\\d+)_')")
    parser.add_argument("--near-threshold", type=int, default=NEAR_DUPLICATE_THRESHOLD,
                        help="max phash Hamming distance for near-duplicate groups, when there are no "
                             "CSV/regex groups (default 4)")
    parser.add_argument("--stratify-by", default=None, metavar="COLUMN",
                        help="stratify by (class, value of this manifest column) instead of class alone, e.g. origin")
    parser.add_argument("--hold-out-by", default=None, metavar="COLUMN",
                        help="one fold per value of this manifest column (e.g. origin): each fold tests on one value "
                             "and trains on the others; --folds then sets the validation share (1/folds)")
    parser.add_argument("--out", default="split.json", type=path_text, help="split file to write (default split.json)")
    parser.add_argument("--allow-outside-paths", action="store_true",
                        help="read CSV manifest rows whose file lies outside the manifest's folder (refused by "
                             "default, listed when allowed)")


def run(args: argparse.Namespace) -> int:
    from hypoderm.data.dataset import check_images, load_index
    from hypoderm.data.splits import make_holdout_split, make_split

    t0 = time.perf_counter()
    index = load_index(args.source, group_regex=None, allow_outside_paths=args.allow_outside_paths)
    good, bad = check_images(index)
    for s, reason in bad:
        print(f"skipped unreadable {index.relpath(s)}: {reason}", file=sys.stderr)
    if args.hold_out_by:
        split = make_holdout_split(good, args.hold_out_by, val_folds=args.folds, seed=args.seed,
                                   group_regex=args.group_regex, near_threshold=args.near_threshold)
    else:
        split = make_split(good, folds=args.folds, seed=args.seed, group_regex=args.group_regex,
                           near_threshold=args.near_threshold, stratify_by=args.stratify_by)
    try:
        split.save(args.out)
    except OSError as e:
        raise UsageError(f"cannot write {args.out}: {e.strerror or e}") from e
    n_groups = len({s.group for s in split.samples})
    how = f"held out by {split.holdout}: {', '.join(split.values or [])}" if split.holdout else "stratified"
    print(f"{len(split.samples)} images, {len(split.class_names)} classes, {n_groups} groups "
          f"({split.group_source}), {split.folds} folds ({how}), seed {split.seed}")
    print(split.summary())
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0
