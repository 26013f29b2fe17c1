"""`hypoderm cv`: k-fold cross-validation of one model, same protocol per fold, resumable fold by fold.

Fold f trains on the other folds except f+1 (validation: early stopping, temperature, abstain
threshold) and is tested on fold f. Layout of OUT:

    split.json  cv_config.json  summary.json  summary.md  pooled_test_predictions.npz
    fold0/ best.pt last.pt metrics.jsonl metrics.json report.md test_predictions.npz *.png
    fold1/ ...

Re-running the same command skips finished folds (fold*/metrics.json) and resumes a fold whose
training was interrupted (fold*/last.pt).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hypoderm.engine.cache import DecodedCache
from hypoderm.engine.config import TrainConfig, add_train_arguments, config_from_args
from hypoderm.engine.metrics import scalar_metrics
from hypoderm.preprocess import PreprocessSpec

# the settings that define the experiment; a resumed cv must not change them
_PROTOCOL_KEYS = ("data", "model", "folds", "seed", "size", "epochs", "batch_size", "lr", "weight_decay",
                  "warmup_epochs", "label_smoothing", "balance", "ema", "ema_decay", "bn_momentum", "patience", "pretrained",
                  "group_regex", "max_steps", "abstain_target")
TABLE_KEYS = ("accuracy", "macro_f1", "weighted_f1", "roc_auc_ovr", "ece_before", "ece_after")


def summarize(fold_metrics: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1) over folds of every scalar metric and per-class F1."""
    per_fold = {f: scalar_metrics(m) for f, m in fold_metrics.items()}
    for f, m in fold_metrics.items():
        for c, v in m.get("per_class", {}).items():
            per_fold[f][f"f1/{c}"] = float(v["f1"])
    keys = sorted({k for m in per_fold.values() for k in m})
    out: dict[str, Any] = {"folds": sorted(fold_metrics), "mean": {}, "std": {}, "per_fold": per_fold}
    for k in keys:
        vals = np.array([per_fold[f].get(k, np.nan) for f in sorted(per_fold)], dtype=np.float64)
        ok = vals[np.isfinite(vals)]
        out["mean"][k] = float(ok.mean()) if len(ok) else float("nan")
        out["std"][k] = float(ok.std(ddof=1)) if len(ok) > 1 else float("nan")
    return out


def protocol_line(folds: int) -> str:
    """How much of the data each fold's model trains on (test = 1 fold, validation = 1 fold): with 3
    folds only a third, which understates what a model trained on everything can do."""
    frac = (folds - 2) / folds
    words = {3: "a third", 4: "half"}.get(folds, f"{frac:.0%}")
    line = (f"{folds}-fold cross-validation: each fold's model trains on {words} of the photos "
            f"({folds - 2}/{folds}), validates on 1/{folds} and is tested on 1/{folds}.")
    if folds < 5:
        line += " Use --folds 5 (or more) for numbers closer to a model trained on all the data."
    return line


def render_summary(s: dict[str, Any], cfg: TrainConfig, elapsed_s: float | None = None) -> str:
    head = "| fold | " + " | ".join(TABLE_KEYS) + " |"
    lines = [f"# {len(s['folds'])}-fold cross-validation: {cfg.model}", "",
             f"Data `{cfg.data}`, size {cfg.size}, {cfg.epochs} epochs max (patience {cfg.patience}), "
             f"batch {cfg.batch_size}, lr {cfg.lr}, seed {cfg.seed}. Test = fold f, validation = fold f+1.", "",
             protocol_line(int(s.get("k") or cfg.folds)), "",
             head, "|---" * (len(TABLE_KEYS) + 1) + "|"]
    for f in s["folds"]:
        lines.append(f"| {f} | " + " | ".join(f"{s['per_fold'][f].get(k, float('nan')):.3f}" for k in TABLE_KEYS) + " |")
    lines.append("| **mean ± std** | " + " | ".join(f"{s['mean'][k]:.3f} ± {s['std'][k]:.3f}" for k in TABLE_KEYS) + " |")
    if elapsed_s is not None:
        lines += ["", f"Wall time of this invocation: {elapsed_s / 60:.1f} min."]
    lines += ["", "std is the sample standard deviation over folds (ddof=1).", ""]
    return "\n".join(lines)


def run_cv(cfg: TrainConfig, out: str | Path, *, folds: list[int] | None = None, n_bootstrap: int = 1000,
           device: str | None = None) -> dict[str, Any]:
    """Train and test every fold (skipping finished ones); returns the summary dict (also summary.json)."""
    from hypoderm.data.splits import Split, make_split
    from hypoderm.engine.evaluate import evaluate_checkpoint
    from hypoderm.engine.train import TrainError, check_leakage, readable_index, train

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_file = out / "cv_config.json"
    if cfg_file.is_file():
        old = json.loads(cfg_file.read_text())
        changed = [k for k in _PROTOCOL_KEYS if old.get(k) != getattr(cfg, k)]
        if changed:
            raise TrainError(f"{out} holds a cross-validation with other settings ({', '.join(changed)}); "
                             "use another --out")
    cfg_file.write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    early_split = Path(cfg.split) if cfg.split else out / "split.json"
    k = Split.load(early_split).folds if early_split.is_file() else cfg.folds
    print(protocol_line(k), flush=True)  # the run's first line

    spec = PreprocessSpec.for_size(cfg.size)
    cache = DecodedCache(spec, cfg.cache_dir)
    index, _ = readable_index(cfg.data, cfg.group_regex, cfg.strict, cache, progress=cfg.progress)
    split_path = Path(cfg.split) if cfg.split else out / "split.json"
    if split_path.is_file():
        split = Split.load(split_path)
        split.check_matches(index)
    else:
        split = make_split(index, folds=cfg.folds, seed=cfg.seed, group_regex=cfg.group_regex)
        split.save(split_path)
    check_leakage(index, split, cfg.allow_leakage)  # once here, not once per fold
    todo = list(range(split.folds)) if folds is None else folds
    t0 = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    for f in todo:
        fold_dir = out / f"fold{f}"
        done = fold_dir / "metrics.json"
        if done.is_file():
            results[f] = json.loads(done.read_text())
            print(f"fold {f}: already done (accuracy {results[f]['accuracy']:.3f}, "
                  f"macro-F1 {results[f]['macro_f1']:.3f})", flush=True)
            continue
        print(f"fold {f}/{split.folds}: training", flush=True)
        fold_cfg = cfg.with_(fold=f, folds=split.folds, split=str(split_path), out=str(fold_dir),
                             resume=(fold_dir / "last.pt").is_file())
        if device is not None:
            fold_cfg = fold_cfg.with_(device=device)
        train(fold_cfg, cache=cache, check_leaks=False)
        if cfg.stop_after_epoch is not None and not _finished(fold_dir):
            return {}  # debug kill point: leave the fold for --resume
        results[f] = evaluate_checkpoint(fold_dir / "best.pt", split=split_path, fold=f, part="test", out=fold_dir,
                                         device=fold_cfg.device, n_bootstrap=n_bootstrap, cache=cache)
        print(f"fold {f}: test accuracy {results[f]['accuracy']:.3f}, macro-F1 {results[f]['macro_f1']:.3f}", flush=True)

    all_done = {f: json.loads((out / f"fold{f}" / "metrics.json").read_text())
                for f in range(split.folds) if (out / f"fold{f}" / "metrics.json").is_file()}
    summary = summarize(all_done)
    summary["config"] = cfg.to_dict()
    summary["k"] = split.folds
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(render_summary(summary, cfg, time.perf_counter() - t0))
    pooled = [np.load(out / f"fold{f}" / "test_predictions.npz") for f in sorted(all_done)]
    if pooled:
        np.savez(out / "pooled_test_predictions.npz",
                 y_true=np.concatenate([p["y_true"] for p in pooled]),
                 probs=np.concatenate([p["probs"] for p in pooled]),
                 fold=np.concatenate([np.full(len(p["y_true"]), f) for f, p in zip(sorted(all_done), pooled)]),
                 class_names=pooled[0]["class_names"])
    return summary


def _finished(fold_dir: Path) -> bool:
    from hypoderm.checkpoint import load_checkpoint

    best = fold_dir / "best.pt"
    return best.is_file() and load_checkpoint(best).get("ood") is not None  # calibrate_best ran


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser, cv=True)
    parser.add_argument("--only-folds", default=None, help="comma-separated folds to run (default: all)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")


def run(args: argparse.Namespace) -> int:
    from hypoderm.checkpoint import CheckpointError
    from hypoderm.data.dataset import DatasetError
    from hypoderm.engine.evaluate import EvaluateError
    from hypoderm.engine.train import TrainError

    try:
        cfg = config_from_args(args)
        out = args.out or f"runs/cv-{cfg.model}"
        folds = [int(x) for x in args.only_folds.split(",")] if args.only_folds else None
        summary = run_cv(cfg.with_(out=out), out, folds=folds, n_bootstrap=args.bootstrap)
    except (TrainError, EvaluateError, DatasetError, CheckpointError, ValueError) as e:
        print(f"hypoderm cv: error: {e}", file=sys.stderr)
        return 2
    if summary:
        print(Path(out, "summary.md").read_text())
    return 0
