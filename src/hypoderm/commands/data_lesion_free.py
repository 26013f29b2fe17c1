"""`hypoderm data lesion-free`: lesion-free skin squares cut from lesion photos with exact masks
(hypoderm.data.lesionfree), and a manifest that adds them to the photos as normal skin."""

from __future__ import annotations

import argparse
import sys
import time

from hypoderm.commands import path_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hypoderm.data.lesionfree import MASK_COLUMN, CutOptions

    d = CutOptions()
    parser.add_argument("manifest", type=path_text,
                        help=f"CSV manifest with path, label and a {MASK_COLUMN} column (the mask's path, "
                                         "white = lesion; rows without one are copied unchanged)")
    parser.add_argument("--out", required=True, type=path_text,
                        help="empty folder for the squares and the new manifest.csv")
    parser.add_argument("--normal-label", default="normal_skin", help="the class of the squares (default %(default)s)")
    parser.add_argument("--per-photo", type=int, default=d.per_photo, help="squares per photo, at most "
                                                                           "(default %(default)s)")
    parser.add_argument("--side", type=float, default=d.side,
                        help="a square's side, as a share of the photo's shorter side (default %(default)s)")
    parser.add_argument("--margin", type=float, default=d.margin,
                        help="the mask widened by this share of the shorter side, for pen circles drawn around "
                             "lesions (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="where the squares fall (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from hypoderm.data.lesionfree import CutOptions, cut_lesion_free

    t0 = time.perf_counter()
    opts = CutOptions(per_photo=args.per_photo, side=args.side, margin=args.margin)
    report = cut_lesion_free(args.manifest, args.out, args.normal_label, opts, seed=args.seed)
    for path, why in report.errors:
        print(f"skipped {path}: {why}", file=sys.stderr)
    print(f"{report.squares} lesion-free squares from {report.photos} photos with a mask "
          f"({len(report.without_square)} with no room beside the lesion, {len(report.errors)} unreadable) "
          f"in {time.perf_counter() - t0:.1f} s")
    print(f"wrote {report.manifest}: the original photos (absolute paths) and the squares as "
          f"{args.normal_label!r}, each with its photo's group and origin; train on it with --allow-outside-paths")
    return 1 if report.errors and not report.squares else 0
