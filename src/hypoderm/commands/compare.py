"""`hypoderm compare`: the comparison study, many models under one protocol (hypoderm.study.compare)."""

from __future__ import annotations

import argparse
import sys
import time

from hypoderm.commands import path_arg
from hypoderm.commands.options import add_train_arguments, config_from_args
from hypoderm.errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default=None, help="comma-separated model names, or presets: paper, ablation, "
                                                      "design, all (hypoderm.study.bench.PRESETS)")
    p.add_argument("--preset", choices=["paper", "ablation", "design"], help="paper: hypodermnet vs mnv3s and 5 CNNs; "
                   "ablation: the 8 mnv3s* variants; design: hypodermnet's open design choices")
    p.add_argument("--out", required=True, type=path_arg, help="study directory (re-run to resume)")
    # every training flag of `hypoderm cv` (recipe, balance, label smoothing, EMA, abstain target, ...), so that
    # a study runs the recipe it says; --hold-out-by adds the held-out protocol for every model
    add_train_arguments(p, study=True)
    p.add_argument("--reference", default="hypodermnet", help="model of the paired comparison")
    p.add_argument("--latency-size", type=int, default=224, help="input size for the latency/FLOPs columns")
    p.add_argument("--threads", type=int, default=1, help="threads for the latency measurement")
    p.add_argument("--runs", type=int, default=30, help="timed runs per model")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")


def run(args: argparse.Namespace) -> int:
    from hypoderm.study.bench import parse_models
    from hypoderm.study.compare import run_study, write_reports

    if not args.models and not args.preset:
        raise UsageError("give --models or --preset")
    models = parse_models(",".join(filter(None, [args.preset, args.models])))
    cfg = config_from_args(args)
    cfg = cfg.with_(cache_dir=cfg.cache_dir or str(args.out / "cache"), hold_out_by=None)
    if args.reference not in models:
        print(f"note: reference model {args.reference!r} is not in the study; no paired table", file=sys.stderr)
    t0 = time.perf_counter()
    summaries = run_study(cfg, models, args.out, n_bootstrap=args.bootstrap, hold_out_by=args.hold_out_by)
    result = write_reports(cfg, models, args.out, summaries, args.reference, args.latency_size, args.threads,
                           args.runs, args.bootstrap, time.perf_counter() - t0, preset=args.preset)
    print((args.out / "main.md").read_text())
    if result["paired"]:
        print((args.out / "paired.md").read_text())
    written = ["main.md"] + (["ablation.md"] if (args.out / "ablation.md").is_file() else []) + \
        (["paired.md"] if result["paired"] else []) + ["results.json/csv", "pareto_*.png"]
    print(f"written to {args.out}/ ({', '.join(written)})")
    return 0
