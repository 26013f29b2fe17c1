"""`hypoderm cv`: k-fold cross-validation of one model, same protocol per fold, resumable fold by fold.

Fold f trains on the other folds except f+1 (validation: early stopping, temperature, abstain
threshold) and is tested on fold f. Layout of OUT:

    split.json  cv_config.json  summary.json  summary.md  pooled_test_predictions.npz
    fold0/ best.pt (written once, calibrated, when the fold's training ends) last.pt metrics.jsonl metrics.json
           report.md test_predictions.npz *.png
    fold1/ ...

Re-running the same command skips finished folds (fold*/metrics.json) and resumes a fold whose
training was interrupted (fold*/last.pt).

Every macro-F1 is printed with the CNN's margin over the photo-style baseline on the same folds
(`hypoderm.data.shortcut`: classifiers on trivial photo features such as size and border colour),
so a score that photo style alone would reach is visible as such; summary.json keeps it under "shortcut".
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from hypoderm.engine.cache import DecodedCache
from hypoderm.engine.config import PROTOCOL_KEYS, TrainConfig, TrainError
from hypoderm.inference.preprocess import PreprocessSpec
from hypoderm.metrics import scalar_metrics

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


def style_baseline(index: Any, split: Any, cache: DecodedCache | None = None) -> tuple[Any, str | None]:
    """(ShortcutReport, None), or (None, why not) when the dataset is too small for the baseline. The photos'
    style features come from `cache` where it measured them while decoding (else each file is read again)."""
    from hypoderm.data.shortcut import ShortcutError, shortcut_baseline

    known = cache.features if cache is not None else {}
    features = {index.relpath(s): known[Path(s.path)] for s in index.samples if Path(s.path) in known}
    try:
        return shortcut_baseline(index, split, features=features), None
    except (ShortcutError, ValueError) as e:
        return None, str(e)


def margin_note(cnn_macro_f1: float, baseline_macro_f1: float | None) -> str:
    """', margin +0.021 over style baseline 0.739' (empty without a baseline)."""
    if baseline_macro_f1 is None or not np.isfinite(baseline_macro_f1):
        return ""
    return f", margin {cnn_macro_f1 - baseline_macro_f1:+.3f} over style baseline {baseline_macro_f1:.3f}"


def _shortcut_columns(s: dict[str, Any]) -> tuple[dict[str, float], bool]:
    sc = s.get("shortcut") or {}
    per_fold = {str(f): float(v) for f, v in (sc.get("per_fold_macro_f1") or {}).items()}
    return per_fold, bool(per_fold)


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


def holdout_protocol_line(column: str, values: list[str], folds: int) -> str:
    """The held-out protocol in one line: one fold per value of `column`, each tested on the value it never saw."""
    return (f"Held-out-{column} evaluation: {len(values)} folds, one per {column} ({', '.join(values)}); each fold's "
            f"model trains on the other {column}s (validating on about 1/{folds} of their photos) and is tested "
            f"on the {column} it never saw.")


def first_line(cfg: TrainConfig, split_path: Path) -> str:
    """The run's first line: the protocol this run follows, from its split file when there is one (a resumed
    run, a study's shared split), else from the settings (held-out values read from the manifest, no decoding)."""
    from hypoderm.data.splits import Split

    if split_path.is_file():
        split = Split.load(split_path)
        if split.holdout is not None:
            return holdout_protocol_line(split.holdout, list(split.values or []), cfg.folds)
        return protocol_line(split.folds)
    if cfg.hold_out_by is not None:
        from hypoderm.data.dataset import load_index
        from hypoderm.data.splits import column_value

        index = load_index(cfg.data, group_regex=cfg.group_regex, allow_outside_paths=cfg.allow_outside_paths)
        values = sorted({column_value(s, cfg.hold_out_by) for s in index.samples})
        return holdout_protocol_line(cfg.hold_out_by, values, cfg.folds)
    return protocol_line(cfg.folds)


def render_summary(s: dict[str, Any], cfg: TrainConfig, elapsed_s: float | None = None) -> str:
    base, has_base = _shortcut_columns(s)
    extra = " | style baseline macro_f1 | margin" if has_base else ""
    head = "| fold | " + " | ".join(TABLE_KEYS) + extra + " |"
    lines = [f"# {len(s['folds'])}-fold cross-validation: {cfg.model}", "",
             f"Data `{cfg.data}`, size {cfg.size}, {cfg.epochs} epochs max (patience {cfg.patience}), "
             f"batch {cfg.batch_size}, lr {cfg.lr}, seed {cfg.seed}. Test = fold f, validation = fold f+1.", "",
             protocol_line(int(s.get("k") or cfg.folds)), "",
             head, "|---" * (len(TABLE_KEYS) + 1 + 2 * has_base) + "|"]
    for f in s["folds"]:
        cells = [f"{s['per_fold'][f].get(k, float('nan')):.3f}" for k in TABLE_KEYS]
        if has_base:
            b = base.get(str(f), float("nan"))
            cells += [f"{b:.3f}", f"{s['per_fold'][f].get('macro_f1', float('nan')) - b:+.3f}"]
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    cells = [f"{s['mean'][k]:.3f} ± {s['std'][k]:.3f}" for k in TABLE_KEYS]
    if has_base:
        sc = s["shortcut"]
        # mean of the per-fold margins: right even when only some folds have run
        margins = [s["per_fold"][f].get("macro_f1", float("nan")) - base.get(str(f), float("nan")) for f in s["folds"]]
        cells += [f"{sc['macro_f1_mean']:.3f} ± {sc['macro_f1_std']:.3f}", f"{float(np.nanmean(margins)):+.3f}"]
    lines.append("| **mean ± std** | " + " | ".join(cells) + " |")
    if has_base:
        sc = s["shortcut"]
        lines += ["", f"Style baseline: a {sc.get('model_title', sc['model'])} on {sc['features']} trivial photo "
                  "features (size, skin and border colour, sharpness, file size; no lesion) trained on the same folds "
                  f"(`hypoderm data audit` explains it); pooled ROC-AUC {sc['roc_auc_pooled']:.3f}. margin = CNN "
                  "macro-F1 − baseline macro-F1 on the same test fold."]
        if sc.get("warning"):
            lines += ["", f"**{sc['warning']}**"]
    elif (s.get("shortcut") or {}).get("error"):
        lines += ["", f"Style baseline not computed: {s['shortcut']['error']}"]
    if elapsed_s is not None:
        lines += ["", f"Wall time of this invocation: {elapsed_s / 60:.1f} min."]
    lines += ["", "std is the sample standard deviation over folds (ddof=1).", ""]
    return "\n".join(lines)


def run_cv(cfg: TrainConfig, out: str | Path, *, folds: list[int] | None = None, n_bootstrap: int = 1000,
           device: str | None = None, cache: DecodedCache | None = None) -> dict[str, Any]:
    """Train and test every fold (skipping finished ones); returns the summary dict (also summary.json).

    Every photo is decoded once, into `cache` (one passed in by a study that runs several models, else a new
    one), which every fold's training and evaluation then read."""
    from hypoderm.engine.evaluate import evaluate_checkpoint
    from hypoderm.engine.fold import check_leakage, load_or_make_split, readable_index
    from hypoderm.engine.train import train
    from hypoderm.models import canonical_name

    canonical_name(cfg.model)  # an unknown model is a ValueError now, not after every photo is decoded
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_file = out / "cv_config.json"
    if cfg_file.is_file():
        old = TrainConfig.from_dict(json.loads(cfg_file.read_text()))  # fields added since: their old default
        changed = [k for k in PROTOCOL_KEYS if getattr(old, k) != getattr(cfg, k)]
        if changed:
            raise TrainError(f"{out} holds a cross-validation with other settings ({', '.join(changed)}); "
                             "use another --out")
    cfg_file.write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
    early_split = Path(cfg.split) if cfg.split else out / "split.json"
    print(first_line(cfg, early_split), flush=True)

    spec = PreprocessSpec.for_size(cfg.size)
    if cache is None or cache.spec != spec:
        cache = DecodedCache(spec, cfg.cache_dir, style_features=True)
    index, bad = readable_index(cfg.data, cfg.group_regex, cfg.strict, cache, progress=cfg.progress,
                                allow_outside_paths=cfg.allow_outside_paths)
    print(f"photos: {cache.stats_line()}", flush=True)
    split_path = early_split
    split = load_or_make_split(index, split_path, make_if_missing=not cfg.split, folds=cfg.folds, seed=cfg.seed,
                               group_regex=cfg.group_regex, unreadable=bad, hold_out_by=cfg.hold_out_by)
    check_leakage(index, split, cfg.allow_leakage)  # once here, not once per fold
    shortcut, shortcut_error = style_baseline(index, split, cache)
    base_f1 = shortcut.fold_macro_f1() if shortcut is not None else {}
    if split.holdout is not None:
        single = _single_source(split)
        if single:
            print(f"classes with a single {split.holdout}, which no fold can test: "
                  + ", ".join(f"{c} (only {v})" for c, v in single.items()), flush=True)
    todo = list(range(split.folds)) if folds is None else folds
    t0 = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    for f in todo:
        fold_dir = out / f"fold{f}"
        done = fold_dir / "metrics.json"
        if done.is_file():
            results[f] = json.loads(done.read_text())
            print(f"fold {f}: already done ({_fold_line(results[f], split, f, base_f1.get(f))})", flush=True)
            continue
        print(f"fold {f}/{split.folds} ({split.fold_name(f)}): training", flush=True)
        fold_cfg = cfg.with_(fold=f, folds=split.folds, split=str(split_path), out=str(fold_dir),
                             resume=(fold_dir / "last.pt").is_file())
        if device is not None:
            fold_cfg = fold_cfg.with_(device=device)
        train(fold_cfg, cache=cache, check_leaks=False)
        if cfg.stop_after_epoch is not None and not _finished(fold_dir):
            return {}  # debug kill point: leave the fold for --resume
        results[f] = evaluate_checkpoint(fold_dir / "best.pt", split=split_path, fold=f, part="test", out=fold_dir,
                                         device=fold_cfg.device, n_bootstrap=n_bootstrap, cache=cache)
        print(f"fold {f}: {_fold_line(results[f], split, f, base_f1.get(f))}", flush=True)
    print(f"photos: {cache.stats_line()}", flush=True)

    all_done = {f: json.loads((out / f"fold{f}" / "metrics.json").read_text())
                for f in range(split.folds) if (out / f"fold{f}" / "metrics.json").is_file()}
    summary = summarize(all_done)
    summary["config"] = cfg.to_dict()
    if split.holdout is not None:
        summary["holdout"] = holdout_summary(out, split, all_done, index, shortcut)
    if shortcut is not None:
        summary["shortcut"] = shortcut.to_dict({f: m["macro_f1"] for f, m in all_done.items()})
        summary["shortcut"]["warning"] = shortcut.warn(summary["mean"].get("macro_f1"))
    else:
        summary["shortcut"] = {"error": shortcut_error}
    summary["k"] = split.folds
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    render = render_holdout_summary if split.holdout is not None else render_summary
    (out / "summary.md").write_text(render(summary, cfg, time.perf_counter() - t0))
    pooled = [np.load(out / f"fold{f}" / "test_predictions.npz") for f in sorted(all_done)]
    if pooled:
        np.savez(out / "pooled_test_predictions.npz",
                 y_true=np.concatenate([p["y_true"] for p in pooled]),
                 probs=np.concatenate([p["probs"] for p in pooled]),
                 fold=np.concatenate([np.full(len(p["y_true"]), f)
                                      for f, p in zip(sorted(all_done), pooled, strict=True)]),
                 class_names=pooled[0]["class_names"])
    return summary


def _fold_line(m: dict[str, Any], split: Any, fold: int, base_f1: float | None) -> str:
    """'test accuracy 0.912, macro-F1 0.874, margin ...', or for a held-out value the recall of each class."""
    if split.holdout is None:
        return (f"test accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}"
                f"{margin_note(m['macro_f1'], base_f1)}")
    trained = _trained_classes(split, fold)
    parts = [f"{c} recall {v['recall']:.3f} (n={v['support']})" if c in trained
             else f"{c} untestable (n={v['support']})" for c, v in m["per_class"].items() if v["support"]]
    return f"{split.fold_name(fold)}: " + ", ".join(parts)


def _single_source(split: Any) -> dict[str, str]:
    from hypoderm.engine.holdout import single_source_classes

    values: dict[str, list[str]] = {c: [] for c in split.class_names}
    for s in split.samples:
        values[s.label].append(split.values[s.fold])
    return single_source_classes(values)


def _trained_classes(split: Any, fold: int) -> list[str]:
    train, val, _ = split.partition(fold)
    return sorted({split.samples[i].label for i in train + val})


def holdout_summary(out: Path, split: Any, done: dict[int, dict[str, Any]], index: Any,
                    shortcut: Any) -> dict[str, Any]:
    """Per held-out value: the model's and the photo-style baseline's measurable numbers
    (hypoderm.engine.holdout), the classes no fold can test, and how well photo style predicts the column."""
    from hypoderm.data.shortcut import ShortcutError, column_predictability
    from hypoderm.engine.holdout import balanced_recall, holdout_report

    names = list(split.class_names)
    model: dict[str, Any] = {}
    for f, m in sorted(done.items()):
        z = np.load(out / f"fold{f}" / "test_predictions.npz")
        model[split.values[f]] = holdout_report(z["y_true"], z["probs"], names, _trained_classes(split, f),
                                                threshold=float(m["abstain"]["threshold"]))
    result: dict[str, Any] = {"column": split.holdout, "values": list(split.values), "model": model,
                              "single_source": _single_source(split), "balanced_recall": balanced_recall(model)}
    if shortcut is not None:
        per_kind = {}
        for kind, probs in shortcut.oof_probs.items():
            reports = {}
            for f in range(split.folds):
                rows = (shortcut.fold_of == f) & np.isfinite(probs).all(axis=1)
                if rows.any():
                    reports[split.values[f]] = holdout_report(shortcut.labels[rows], probs[rows], names,
                                                              _trained_classes(split, f))
            per_kind[kind] = reports
        best = max(per_kind, key=lambda k: np.nan_to_num(balanced_recall(per_kind[k]), nan=-1.0))
        result["baseline"] = {"model": best, "reports": per_kind[best],
                              "balanced_recall": balanced_recall(per_kind[best])}
        try:
            result["predictability"] = column_predictability(index, split.holdout, shortcut)
        except ShortcutError as e:
            result["predictability"] = {"error": str(e)}
    return result


def render_holdout_summary(s: dict[str, Any], cfg: TrainConfig, elapsed_s: float | None = None) -> str:
    from hypoderm.data.shortcut import MODEL_TITLES, predictability_line
    from hypoderm.engine.holdout import render_holdout_table

    h = s["holdout"]
    col = h["column"]
    base = h.get("baseline")
    lines = [f"# Held-out-{col} evaluation: {cfg.model}", "",
             f"Data `{cfg.data}`, size {cfg.size}, {cfg.epochs} epochs max (patience {cfg.patience}), batch "
             f"{cfg.batch_size}, lr {cfg.lr}, recipe {cfg.recipe}, balance {cfg.balance}"
             + (f" by {cfg.balance_by}" if cfg.balance_by else "")
             + (f", counterfactual {cfg.counterfactual}" if cfg.counterfactual else "") + f", seed {cfg.seed}.", "",
             f"Each fold trains on every {col} but one (validation: about 1/{cfg.folds} of each other {col}) and is "
             f"tested on the {col} it never saw. recall = share of the class's photos called that class; "
             "answered = share above the abstain threshold (status ok); untestable = a class whose only "
             f"{col} is the held-out one, so the fold's model never saw it (shown: what it called them).", ""]
    if h["single_source"]:
        lines += [f"**Classes with a single {col}, which this protocol cannot test:** "
                  + ", ".join(f"`{c}` (only `{v}`)" for c, v in h["single_source"].items())
                  + f". Their numbers come from ordinary cross-validation only, where every test photo shares its "
                  f"{col} with training photos.", ""]
    lines += render_holdout_table(h["model"], base["reports"] if base else None)
    lines += ["", f"Balanced held-out recall (mean recall over the testable ({col}, class) rows): model "
              f"{h['balanced_recall']:.3f}"
              + (f", photo-style baseline ({MODEL_TITLES[base['model']]} on trivial photo features, same folds) "
                 f"{base['balanced_recall']:.3f}" if base else "") + "."]
    pred = h.get("predictability") or {}
    if "error" in pred:
        lines += ["", f"Predictability of the {col} not computed: {pred['error']}"]
    elif pred:
        lines += ["", predictability_line(pred)]
    if elapsed_s is not None:
        lines += ["", f"Wall time of this invocation: {elapsed_s / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def _finished(fold_dir: Path) -> bool:
    from hypoderm.checkpoint import load_checkpoint

    best = fold_dir / "best.pt"
    return best.is_file() and bool(load_checkpoint(best).get("complete"))  # written once, when training ended
