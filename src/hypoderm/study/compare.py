"""`hypoderm compare`: the comparison study.

Every model runs the same cross-validated protocol (one split file, same seeds, same recipe) via
`hypoderm.engine.cv.run_cv`; models whose folds are all finished are skipped, so an interrupted
study resumes where it stopped. Then, in one process and one timing loop, the efficiency of every
model is measured (`hypoderm.study.bench.bench`), and the study writes:

    OUT/split.json                 the one split every model uses
    OUT/models/<name>/...          each model's cross-validation (see `hypoderm cv`)
    OUT/results.json, results.csv  everything below, machine-readable
    OUT/main.md                    accuracy, macro-F1 (mean ± std over folds, pooled bootstrap CI) with
                                   each model's margin over the photo-style baseline on the same folds
                                   (`hypoderm.data.shortcut`), params, MACs/FLOPs, ORT and PyTorch latency,
                                   ONNX size
    OUT/ablation.md                the same for the mnv3s* variants (--preset ablation only)
    OUT/paired.md                  the reference model (default hypodermnet) against each other model
    OUT/pareto_latency.png, pareto_params.png
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from hypoderm.errors import UsageError
from hypoderm.metrics import macro_f1
from hypoderm.models import canonical_name, is_table_model
from hypoderm.study.bench import PRESETS, bench
from hypoderm.text import fmt


def model_done(model_dir: Path, folds: int) -> bool:
    return (model_dir / "summary.json").is_file() and all(
        (model_dir / f"fold{f}" / "metrics.json").is_file() for f in range(folds))


def run_study(cfg: Any, models: list[str], out: Path, n_bootstrap: int = 1000,
              hold_out_by: str | None = None) -> dict[str, dict[str, Any]]:
    """Cross-validate every model with one shared split; returns {model: cv summary}. With `hold_out_by` (a
    manifest column such as origin) each model also runs the held-out protocol (one fold per value, in
    models/NAME/holdout-COLUMN/, one shared held-out split); its summary is under the key "holdout"."""
    from hypoderm.data.dataset import check_images, load_index
    from hypoderm.data.splits import Split, make_split
    from hypoderm.engine.cache import DecodedCache
    from hypoderm.engine.cv import run_cv
    from hypoderm.inference.preprocess import PreprocessSpec

    # every photo decoded once for all the models' runs (and their photo-style baselines)
    cache = DecodedCache(PreprocessSpec.for_size(cfg.size), cfg.cache_dir, style_features=True)
    out.mkdir(parents=True, exist_ok=True)
    split_path = out / "split.json"  # the study folder keeps the split it used, whoever made it
    if cfg.split and not split_path.is_file():
        shutil.copyfile(cfg.split, split_path)
    elif cfg.split and Path(cfg.split).read_bytes() != split_path.read_bytes():
        raise UsageError(f"{out} was run with another split ({split_path}); use another --out")
    if not split_path.is_file():
        index, unreadable = check_images(load_index(cfg.data, group_regex=cfg.group_regex,
                                                    allow_outside_paths=cfg.allow_outside_paths), loader=cache.get)
        for sample, reason in unreadable:
            print(f"skipped unreadable image {sample.path}: {reason}", file=sys.stderr)
        make_split(index, folds=cfg.folds, seed=cfg.seed, group_regex=cfg.group_regex).save(split_path)
    folds = Split.load(split_path).folds
    starts = pretrained_starts(cfg.pretrained, models)
    summaries: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(models, 1):
        model_dir = out / "models" / name
        if model_done(model_dir, folds):
            print(f"[{i}/{len(models)}] {name}: already done, skipped", flush=True)
        else:
            print(f"[{i}/{len(models)}] {name}: cross-validating ({folds} folds)", flush=True)
            t0 = time.perf_counter()
            run_cv(cfg.with_(model=name, pretrained=starts[name], split=str(split_path), folds=folds, hold_out_by=None),
                   model_dir,
                   n_bootstrap=n_bootstrap, cache=cache)
            (model_dir / "wall_time_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
        summaries[name] = json.loads((model_dir / "summary.json").read_text())
        if hold_out_by:
            held_dir = model_dir / f"holdout-{hold_out_by}"
            print(f"[{i}/{len(models)}] {name}: held out by {hold_out_by}", flush=True)
            held_split = out / f"split-holdout-{hold_out_by}.json"
            run_cv(cfg.with_(model=name, pretrained=starts[name],
                             split=str(held_split) if held_split.is_file() else None, hold_out_by=hold_out_by),
                   held_dir, n_bootstrap=n_bootstrap, cache=cache)
            if not held_split.is_file():
                shutil.copyfile(held_dir / "split.json", held_split)  # every model holds out the same folds
            summaries[name]["holdout"] = json.loads((held_dir / "summary.json").read_text())["holdout"]
    print(f"photos: {cache.stats_line()}", flush=True)
    return summaries


def pretrained_starts(pretrained: str | None, models: list[str]) -> dict[str, str | None]:
    """Each model's start: the weights file, or None for a model it holds no tensor of (a baseline such as
    resnet50 given MobileNetV3 weights), which then trains from scratch and is said to."""
    from hypoderm.models import PretrainedMismatchError, create_model

    starts: dict[str, str | None] = {}
    for name in models:
        starts[name] = pretrained
        if pretrained is not None:
            try:
                create_model(name, num_classes=2, pretrained=pretrained)
            except PretrainedMismatchError:
                print(f"note: {name}: {Path(pretrained).name} holds no weights for it; it trains from scratch",
                      flush=True)
                starts[name] = None
    return starts


def pooled(model_dir: Path) -> dict[str, np.ndarray]:
    z = np.load(model_dir / "pooled_test_predictions.npz")
    return {"y_true": z["y_true"], "y_pred": z["probs"].argmax(axis=1), "fold": z["fold"]}


def pooled_ci(p: dict[str, np.ndarray], labels: list[int], n: int, seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap 95% CI of accuracy and macro-F1 over the pooled out-of-fold predictions."""
    from hypoderm.metrics import bootstrap_ci

    return bootstrap_ci(p["y_true"], p["y_pred"], n_resamples=n, seed=seed, labels=labels)


def paired(ref: str, other: str, summaries: dict[str, Any], preds: dict[str, dict[str, np.ndarray]],
           labels: list[int], n_boot: int, seed: int = 0) -> dict[str, Any]:
    """ref minus other, in macro-F1: per fold (same test images), and a paired bootstrap of the pooled predictions."""
    a, b = summaries[ref]["per_fold"], summaries[other]["per_fold"]
    folds = sorted(set(a) & set(b), key=int)
    diffs = np.array([a[f]["macro_f1"] - b[f]["macro_f1"] for f in folds])
    row: dict[str, Any] = {
        "reference": ref, "other": other, "folds": len(folds),
        "mean_diff": float(diffs.mean()), "std_diff": float(diffs.std(ddof=1)) if len(diffs) > 1 else float("nan"),
        "min_diff": float(diffs.min()), "max_diff": float(diffs.max()),
        "wins": int((diffs > 0).sum()), "ties": int((diffs == 0).sum()), "losses": int((diffs < 0).sum()),
    }
    pa, pb = preds[ref], preds[other]
    if np.array_equal(pa["y_true"], pb["y_true"]) and np.array_equal(pa["fold"], pb["fold"]):
        rng = np.random.default_rng(seed)
        n, k = len(pa["y_true"]), len(labels)

        def diff(idx: np.ndarray | slice) -> float:
            return macro_f1(pa["y_true"][idx], pa["y_pred"][idx], k) - macro_f1(pb["y_true"][idx], pb["y_pred"][idx], k)

        boot = np.array([diff(rng.integers(0, n, n)) for _ in range(n_boot)])
        row["pooled_diff"] = diff(slice(None))
        row["pooled_diff_ci95"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
        row["p_ref_not_better"] = float(np.mean(boot <= 0))  # bootstrap share of resamples where ref does not win
    return row


def _pm(summary: dict[str, Any], key: str) -> str:
    m, s = summary["mean"].get(key, float("nan")), summary["std"].get(key, float("nan"))
    return f"{m:.3f} ± {s:.3f}"


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def render_table(rows: list[dict[str, Any]]) -> str:
    has_base = any("style_margin_mean" in r for r in rows)
    head = ("| model | accuracy (mean ± std) | macro-F1 (mean ± std) | macro-F1 pooled [95% CI] "
            + ("| margin over style baseline (mean / pooled) " if has_base else "")
            + "| params | MMACs | ORT ms (p90) | PyTorch ms (p90) | ONNX MB |")
    lines = [head, "|---" * (9 + has_base) + "|"]
    for r in rows:
        ci = r["pooled_ci95"]["macro_f1"]
        margin = (f"| {_num(r.get('style_margin_mean'), '+.3f')} / {_num(r.get('style_margin_pooled'), '+.3f')} "
                  if has_base else "")
        lines.append(
            f"| {r['model']} | {r['accuracy']} | {r['macro_f1']} "
            f"| {r['pooled_macro_f1']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] "
            f"{margin}"
            f"| {r['params']:,} | {r['macs'] / 1e6:.1f} "
            f"| {_num(r['ort_ms_median'], '.2f')} ({_num(r['ort_ms_p90'], '.2f')}) "
            f"| {_num(r['torch_ms_median'], '.2f')} ({_num(r['torch_ms_p90'], '.2f')}) "
            f"| {_num(r['onnx_bytes'] and r['onnx_bytes'] / 1e6, '.2f')} |")
    return "\n".join(lines)


def render_paired(rows: list[dict[str, Any]]) -> str:
    lines = ["| reference − other | folds | mean Δ macro-F1 ± std (per fold) | min / max | wins/ties/losses "
             "| pooled Δ [95% paired bootstrap CI] | P(ref not better) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        pooled_txt = (f"{r['pooled_diff']:+.3f} [{r['pooled_diff_ci95'][0]:+.3f}, {r['pooled_diff_ci95'][1]:+.3f}]"
                      if "pooled_diff" in r else "-")
        lines.append(f"| {r['reference']} − {r['other']} | {r['folds']} | {r['mean_diff']:+.3f} ± {r['std_diff']:.3f} "
                     f"| {r['min_diff']:+.3f} / {r['max_diff']:+.3f} | {r['wins']}/{r['ties']}/{r['losses']} "
                     f"| {pooled_txt} | {r.get('p_ref_not_better', float('nan')):.2f} |")
    return "\n".join(lines)


def _tick_text(v: float, key: str) -> str:
    """Readable log-axis tick labels: "3 ms", "1.5M" parameters."""
    if key == "params":
        return f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k"
    return f"{v:g}"


def plot_pareto(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """macro-F1 against latency and against size, log x axes with labelled 1-2-5 ticks. Points carry
    numbers, not names (names overlap when models sit close together); the legend beside the plot is
    the table: number, model, macro-F1, x value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from hypoderm.engine.plots import place_numbers

    paths = []
    default = canonical_name("hypodermnet")
    for key, label, fname in (("ort_ms_median", "ONNX Runtime latency, batch 1 (ms, log scale)", "pareto_latency.png"),
                              ("params", "parameters (log scale)", "pareto_params.png")):
        pts = sorted((r for r in rows if r.get(key)), key=lambda r: r[key])
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(9.5, 5.5))
        for i, r in enumerate(pts, 1):
            colour = "tab:red" if canonical_name(r["model"]) == default else (
                "tab:blue" if is_table_model(r["model"]) else "tab:gray")
            ax.errorbar(r[key], r["macro_f1_mean"], yerr=r["macro_f1_std"], fmt="o", color=colour, capsize=3,
                        label=f"{i:>2}  {r['model']}  F1 {r['macro_f1_mean']:.3f}  {_tick_text(r[key], key)}"
                        + (" ms" if key == "ort_ms_median" else " params"))
        ax.set_xscale("log")
        lo, hi = min(r[key] for r in pts), max(r[key] for r in pts)
        ax.set_xlim(lo / 1.4, hi * 1.4)
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _, k=key: _tick_text(v, k)))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("macro-F1 (mean ± std over folds)")
        ax.set_title("macro-F1 against " + ("latency" if key.startswith("ort") else "size"), fontsize=10)
        ax.grid(alpha=0.3, which="major")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, frameon=False, handletextpad=0.4,
                  prop={"family": "monospace", "size": 7})
        fig.tight_layout()
        place_numbers(fig, ax, [(r[key], r["macro_f1_mean"]) for r in pts])
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
        paths.append(out / fname)
    return paths


POOLED_VS_MEAN = (
    "Why the per-fold mean and the pooled macro-F1 differ: macro-F1 does not average. The per-fold mean "
    "computes macro-F1 on each fold's test photos (about 1/k of the data) and averages the k numbers, so each "
    "fold counts equally and a small class with a few photos in one fold swings that fold's F1; the pooled value "
    "computes macro-F1 once over all out-of-fold predictions, so each photo counts equally and every class's "
    "precision and recall use all of its photos. Each fold also has its own model, threshold behaviour and class "
    "mix; the two numbers answer different questions and neither is wrong.")


def protocol_start(pretrained: str | None, scratch: list[str] | None = None) -> str:
    """How the weights started: said plainly, never "from scratch unless pretrained=None"; `scratch`: the models
    the weights file had nothing for."""
    if not pretrained:
        return "trained from scratch (random initialisation, no pretrained weights)"
    return (f"fine-tuned from pretrained weights ({Path(pretrained).name})"
            + (f"; {', '.join(scratch)} from scratch (the file holds no weights for them)" if scratch else ""))


def write_reports(cfg: Any, models: list[str], out: Path, summaries: dict[str, Any], reference: str,
                  latency_size: int, threads: int, runs: int, n_boot: int, elapsed_s: float,
                  preset: str | None = None) -> dict[str, Any]:
    class_names = json.loads((out / "split.json").read_text())["class_names"]
    eff = bench(models, size=latency_size, num_classes=len(class_names),
                threads=threads, warmup=5, runs=runs)
    eff_rows = {r["model"]: r for r in eff["rows"]}
    preds = {m: pooled(out / "models" / m) for m in models}
    labels = list(range(len(class_names)))
    rows = []
    for m in models:
        s, e, p = summaries[m], eff_rows[m], preds[m]
        rows.append({
            "model": m, "accuracy": _pm(s, "accuracy"), "macro_f1": _pm(s, "macro_f1"),
            "accuracy_mean": s["mean"]["accuracy"], "accuracy_std": s["std"]["accuracy"],
            "macro_f1_mean": s["mean"]["macro_f1"], "macro_f1_std": s["std"]["macro_f1"],
            "pooled_accuracy": float(np.mean(p["y_true"] == p["y_pred"])),
            "pooled_macro_f1": macro_f1(p["y_true"], p["y_pred"], len(labels)),
            "pooled_ci95": pooled_ci(p, labels, n_boot),
            **{k: e.get(k) for k in ("params", "macs", "flops", "receptive_field", "onnx_bytes", "ort_ms_median",
                                      "ort_ms_p90", "torch_ms_median", "torch_ms_p90")},
        })
    baseline_note = _add_style_margins(cfg, out, rows)
    paired_rows = [paired(reference, m, summaries, preds, labels, n_boot) for m in models
                   if m != reference and reference in summaries]
    env = eff["env"]
    scratch = [m for m in models if not ((summaries.get(m) or {}).get("config") or {}).get("pretrained")]
    protocol = (f"Protocol: {cfg.folds}-fold stratified group-aware cross-validation (`{out / 'split.json'}`), "
                f"fold f tested, fold f+1 validation (early stopping on macro-F1, temperature), the rest trained; "
                f"input {cfg.size}px, {cfg.epochs} epochs max, batch {cfg.batch_size}, AdamW lr {cfg.lr}, "
                f"label smoothing {cfg.label_smoothing}, balance={cfg.balance}, seed {cfg.seed}, "
                f"device {cfg.device}, {protocol_start(cfg.pretrained, scratch)}. "
                f"Accuracy/macro-F1: mean ± sample std over folds; pooled = all out-of-fold test predictions together, "
                f"95% percentile bootstrap CI ({n_boot} resamples).\n"
                f"Efficiency: batch 1, {latency_size}x{latency_size}, {len(class_names)} classes, threads={threads}, "
                f"{runs} timed runs after 5 warm-up, round-robin in one process; {env['processor']} "
                f"({env['cpu_count']} logical CPUs); torch {env['torch']}, onnxruntime {env.get('onnxruntime', '-')}; "
                f"MACs/FLOPs: {eff['flop_counter']}. "
                f"Study wall time this invocation: {elapsed_s / 60:.1f} min; {env['date']}.")
    held = render_holdout(summaries, models)
    (out / "main.md").write_text("# Comparison study\n\n" + render_table(rows) + "\n\n" + baseline_note
                                 + protocol + "\n\n" + POOLED_VS_MEAN + "\n" + held)
    ablation = [r for r in rows if is_table_model(r["model"])]
    stale = out / "ablation.md"
    if preset != "ablation":
        stale.unlink(missing_ok=True)  # an ablation table only for the ablation study
    elif ablation:
        (out / "ablation.md").write_text("# Ablation: the three changes\n\n" + render_table(ablation) + "\n\n"
                                         + baseline_note + protocol + "\n")
    if paired_rows:
        (out / "paired.md").write_text(
            f"# {reference} against each other model (macro-F1)\n\n" + render_paired(paired_rows) + "\n\n"
            "Δ > 0 means the reference is better. Per-fold differences compare the two models on the same test "
            "fold; the pooled Δ resamples the same out-of-fold predictions for both models (paired bootstrap).\n")
    plot_pareto(rows, out)
    result = {"protocol": protocol, "config": cfg.to_dict(), "env": env, "rows": rows, "paired": paired_rows,
              "style_baseline": baseline_note.strip()}
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    with (out / "results.csv").open("w", newline="") as f:
        flat = [{k: v for k, v in r.items() if k != "pooled_ci95"} | {
            "pooled_macro_f1_ci_low": r["pooled_ci95"]["macro_f1"][0],
            "pooled_macro_f1_ci_high": r["pooled_ci95"]["macro_f1"][1]} for r in rows]
        w = csv.DictWriter(f, fieldnames=list(flat[0]))
        w.writeheader()
        w.writerows(flat)
    return result


def render_holdout(summaries: dict[str, Any], models: list[str]) -> str:
    """The held-out protocol beside the ordinary one: per model, the recall of each testable (value, class) row,
    its balanced mean, and the photo-style baseline's on the same folds ('' when no model ran it)."""
    held = {m: summaries[m]["holdout"] for m in models if "holdout" in summaries.get(m, {})}
    if not held:
        return ""
    first = next(iter(held.values()))
    cells = [(v, c) for v, rep in first["model"].items() for c, row in rep["per_class"].items() if row["testable"]]
    col = first["column"]
    lines = ["", f"## Held out by {col} (trained without the {col}, tested on it)", "",
             "| model | " + " | ".join(f"{v}: {c} recall" for v, c in cells) + " | balanced | style baseline |",
             "|---" * (len(cells) + 3) + "|"]
    for m, h in held.items():
        rec = [h["model"].get(v, {}).get("per_class", {}).get(c, {}).get("recall") for v, c in cells]
        base = (h.get("baseline") or {}).get("balanced_recall")
        lines.append(f"| {m} | " + " | ".join(fmt(r, ".2f") for r in rec)
                     + f" | {fmt(h['balanced_recall'])} | {fmt(base)} |")
    single = first.get("single_source") or {}
    if single:
        lines += ["", f"Classes with a single {col}, which this protocol cannot test: "
                  + ", ".join(f"{c} (only {v})" for c, v in single.items()) + "."]
    return "\n".join(lines) + "\n"


def _add_style_margins(cfg: Any, out: Path, rows: list[dict[str, Any]]) -> str:
    """Fit the photo-style baseline on the study's split, add each row's margin over it
    (`style_margin_mean`: fold-mean macro-F1 minus the baseline's; `style_margin_pooled`: the same
    for pooled predictions) and return a paragraph for the reports (with the warning, if any)."""
    from hypoderm.data.dataset import DatasetError, load_index
    from hypoderm.data.shortcut import MODEL_TITLES
    from hypoderm.data.splits import Split
    from hypoderm.engine.cv import style_baseline

    try:
        index = load_index(cfg.data, group_regex=cfg.group_regex, allow_outside_paths=cfg.allow_outside_paths)
        base, why = style_baseline(index, Split.load(out / "split.json"))
    except DatasetError as e:
        base, why = None, str(e)
    if base is None:
        return f"Style baseline not computed: {why}\n\n"
    pooled_base = base.models[base.best].pooled_macro_f1
    for r in rows:
        r["style_margin_mean"] = r["macro_f1_mean"] - base.macro_f1
        r["style_margin_pooled"] = r["pooled_macro_f1"] - pooled_base
    note = (f"Style baseline: a {MODEL_TITLES[base.best]} on {len(base.univariate)} trivial photo features (size, skin "
            f"and border colour, sharpness, file size; no lesion), trained on the same folds: macro-F1 "
            f"{base.macro_f1:.3f} ± {base.models[base.best].macro_f1_std:.3f} (pooled {pooled_base:.3f}), ROC-AUC "
            f"{base.auc:.3f} (`hypoderm data audit` explains it). margin = model macro-F1 − baseline macro-F1.\n\n")
    warning = base.warn(max((r["macro_f1_mean"] for r in rows), default=None))
    return note + (f"**{warning}**\n\n" if warning else "")


__all__ = ["PRESETS", "run_study", "write_reports", "paired"]
