"""`hypoderm data import scin`: a training set from Google's SCIN dataset (hypoderm.data.scin)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from hypoderm.commands import path_arg
from hypoderm.data.scin.fetch import DEFAULT_BASE_URL
from hypoderm.data.scin.labels import DEFAULT_CONDITIONS
from hypoderm.data.scin.selection import DEFAULT_MIN_CONFIDENCE
from hypoderm.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=path_arg, required=True, help="output folder (ImageFolder + manifest.csv)")
    parser.add_argument(
        "--conditions", nargs="+", default=None, metavar="LIST",
        help="classes or SCIN condition names, separated by ';' or ',' (a comma followed by a space "
             "stays inside a name, e.g. 'Acute dermatitis, NOS'); 'SCIN name=class' maps a name "
             f"explicitly. Default: {','.join(DEFAULT_CONDITIONS)} (see docs/SCIN.md)")
    parser.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE, metavar="P",
                        help="minimum weight of the condition in SCIN's weighted differential "
                             f"(default {DEFAULT_MIN_CONFIDENCE})")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help=f"bucket URL (default {DEFAULT_BASE_URL})")
    parser.add_argument("--max-cases", type=int, default=None, metavar="N",
                        help="import at most N cases, round-robin over classes")
    parser.add_argument("--workers", type=int, default=4, help="parallel downloads (default 4)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument("--retries", type=int, default=4, help="retries on server/network errors (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from hypoderm.data.scin.importer import import_scin
    from hypoderm.data.scin.labels import split_condition_list
    from hypoderm.data.scin.report import SOURCE_NAME

    requested = split_condition_list(args.conditions) if args.conditions else list(DEFAULT_CONDITIONS)
    try:
        report = import_scin(
            args.out, conditions=requested, min_confidence=args.min_confidence, base_url=args.base_url,
            max_cases=args.max_cases, workers=args.workers, timeout=args.timeout, retries=args.retries,
            progress=not args.no_progress)
    except OSError as e:
        raise UsageError(f"cannot write to {args.out}: {e}") from e
    sel = report.selection
    per_class = Counter(o.case.label for o in report.outcomes if o.status != "failed")
    print(f"selected {len(sel.cases)} SCIN cases; images: {report.count('downloaded')} downloaded, "
          f"{report.count('skipped')} already present, {report.count('failed')} failed")
    for cls in sorted(set(sel.conditions.values())):
        print(f"  {cls:<36} {sum(c.label == cls for c in sel.cases):>5} cases {per_class.get(cls, 0):>6} images")
    print(f"manifest: {report.manifest}\nsource and licence: {report.out / SOURCE_NAME}")
    if report.failures:
        print(f"warning: {len(report.failures)} image(s) could not be fetched and are not in the manifest "
              f"(listed in {SOURCE_NAME}); re-run to retry them.", file=sys.stderr)
    return 0
