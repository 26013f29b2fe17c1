"""`hypoderm evaluate`: a checkpoint on a split or an external folder (hypoderm.engine.evaluate)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hypoderm.commands import path_text
from hypoderm.text import fmt


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=path_text, help="a hypoderm checkpoint (best.pt)")
    parser.add_argument("--data", default=None, type=path_text,
                        help="data source; alone: evaluate every image of this folder/CSV")
    parser.add_argument("--split", default=None, type=path_text,
                        help="split file (default: the checkpoint's own split)")
    parser.add_argument("--fold", type=int, default=None, help="test fold (default: the training fold)")
    parser.add_argument("--part", choices=["test", "val"], default="test")
    parser.add_argument("--out", default=None, type=path_text, help="output folder (default: next to the checkpoint)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")
    parser.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping")
    parser.add_argument("--group-regex", default=None)
    parser.add_argument("--allow-outside-paths", action="store_true",
                        help="read CSV manifest rows whose file lies outside the manifest's folder (refused by "
                             "default, listed when allowed)")
    parser.add_argument("--no-plots", dest="plots", action="store_false")


def run(args: argparse.Namespace) -> int:
    from hypoderm.engine.evaluate import evaluate_checkpoint

    m = evaluate_checkpoint(args.checkpoint, data=args.data, split=args.split, fold=args.fold, part=args.part,
                            out=args.out, device=args.device, batch_size=args.batch_size, n_bootstrap=args.bootstrap,
                            plots=args.plots, strict=args.strict, group_regex=args.group_regex,
                            allow_outside_paths=args.allow_outside_paths)
    ov = m.get("training_overlap")
    if ov and ov["n"]:
        print(f"hypoderm evaluate: warning: {ov['n']} of {ov['of']} photos in --data are byte-identical to photos that "
              f"trained or validated this checkpoint (e.g. {ov['files'][0]}); the metrics are not independent",
              file=sys.stderr)
    elif ov and not ov["checked"]:
        print(f"hypoderm evaluate: note: overlap with the training photos not checked: {ov['reason']}", file=sys.stderr)
    for problem in m["model_problems"]:  # as `train` warns and `export` refuses
        print(f"hypoderm evaluate: warning: this checkpoint looks broken: {problem['message']}", file=sys.stderr)
    ci = m.get("ci95", {})
    print(f"{m['evaluated_on']}: n={m['n']}  accuracy {m['accuracy']:.3f}"
          + (f" [{ci['accuracy'][0]:.3f}, {ci['accuracy'][1]:.3f}]" if ci else "")
          + f"  macro-F1 {m['macro_f1']:.3f}" + (f" [{ci['macro_f1'][0]:.3f}, {ci['macro_f1'][1]:.3f}]" if ci else "")
          + f"  ROC-AUC {fmt(m['roc_auc_ovr'], missing='n/a')}  ECE {m['ece_before']:.3f} -> {m['ece_after']:.3f}")
    print(f"report: {Path(m['out_dir']) / 'report.md'} (with metrics.json, the predictions and the plots)")
    return 0
