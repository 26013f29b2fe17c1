"""`hypoderm evaluate`: metrics, report and plots of a checkpoint on a split fold or an external folder.

    hypoderm evaluate runs/x/best.pt                      # the test fold the checkpoint was trained for
    hypoderm evaluate runs/x/best.pt --part val
    hypoderm evaluate runs/x/best.pt --split s.json --fold 2 [--data SRC]
    hypoderm evaluate runs/x/best.pt --data other_clinic/  # every image of an external folder
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hypoderm.engine.cache import DecodedCache
from hypoderm.engine.data import CachedImageDataset, build_eval_loader, eval_transform
from hypoderm.errors import HypodermError
from hypoderm.inference import softmax
from hypoderm.inference.preprocess import PreprocessSpec
from hypoderm.metrics import classification_metrics, group_metrics, reliability_bins
from hypoderm.model_quality import effective_abstain_threshold
from hypoderm.text import fmt


class EvaluateError(HypodermError, RuntimeError):
    """A user-facing evaluation problem (class mismatch, missing split, ...)."""


def _split_from_checkpoint(ckpt: dict[str, Any]) -> Any:
    from hypoderm.data.splits import Split

    if not ckpt.get("split"):
        raise EvaluateError("the checkpoint stores no split; pass --split FILE or --data FOLDER")
    with tempfile.TemporaryDirectory() as d:  # reuse Split.load's validation
        p = Path(d) / "split.json"
        p.write_text(json.dumps(ckpt["split"]))
        return Split.load(p)


def checkpoint_roles(ckpt: dict[str, Any]) -> dict[str, str] | None:
    """What each photo of the checkpoint's own split did for it, by relative path: "train" (trained
    it), "val" (selected it: early stopping, temperature, thresholds) or "test" (held out). A
    `--final` checkpoint trained on its test fold too. None when the checkpoint stores no split."""
    if not ckpt.get("split"):
        return None
    split = _split_from_checkpoint(ckpt)
    cfg = ckpt.get("config") or {}
    fold, final = int(cfg.get("fold", 0)), bool(cfg.get("final"))
    roles = {s.path: split.role(fold, s) for s in split.samples}
    return {p: "train" if r == "test" and final else r for p, r in roles.items()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def training_overlap(ckpt: dict[str, Any], files: list[Path]) -> dict[str, Any]:
    """Which of `files` are byte-identical (SHA-256) to a photo that trained or validated the
    checkpoint. Needs the checkpoint's split and its training data on disk; says why when it cannot."""
    roles = checkpoint_roles(ckpt)
    source = (ckpt.get("config") or {}).get("data")
    if roles is None or not source:
        return {"checked": False, "reason": "the checkpoint stores no split or data source", "n": 0, "files": []}
    from hypoderm.data.dataset import DatasetError, load_index

    try:
        index = load_index(source, allow_outside_paths=bool((ckpt.get("config") or {}).get("allow_outside_paths")))
    except (DatasetError, OSError) as e:
        return {"checked": False, "reason": f"the training data {source} is not available ({e})", "n": 0, "files": []}
    seen = {_sha256(s.path) for s in index.samples if roles.get(index.relpath(s)) in ("train", "val")}
    hits = [str(f) for f in files if _sha256(f) in seen]
    return {"checked": True, "n": len(hits), "of": len(files), "files": hits, "training_data": str(source)}


def match_classes(data_classes: list[str], model_classes: list[str]) -> dict[int, int]:
    """Map the data's label ids onto the model's by class name; error listing every unknown class."""
    unknown = [c for c in data_classes if c not in model_classes]
    if unknown:
        raise EvaluateError(f"class name mismatch: the data has {unknown} which the model does not know; "
                            f"the model's classes are {model_classes}, the data's are {data_classes}")
    return {i: model_classes.index(c) for i, c in enumerate(data_classes)}


def evaluate_checkpoint(checkpoint: str | Path | dict[str, Any], *, data: str | Path | None = None,
                        split: str | Path | None = None, fold: int | None = None, part: str = "test",
                        out: str | Path | None = None, device: str = "auto", batch_size: int = 64,
                        n_bootstrap: int = 1000, cache: DecodedCache | None = None, plots: bool = True,
                        strict: bool = False, group_regex: str | None = None,
                        allow_outside_paths: bool = False) -> dict[str, Any]:
    """Evaluate a checkpoint; writes metrics.json, report.md, PNG plots and `{part}_predictions.npz`.

    With `split` (or neither `split` nor `data`: the checkpoint's own split and data) it evaluates
    fold `fold` (default: the training fold), `part` "test" or "val"; with `data` alone, every image
    of that folder/CSV (classes matched to the model's by name). Returns the metrics dict.
    """
    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.data.splits import Split
    from hypoderm.engine.fold import matching_split, readable_index
    from hypoderm.engine.runtime import predict_logits, resolve_device
    from hypoderm.model_quality import checkpoint_problems

    ckpt_path = None if isinstance(checkpoint, dict) else Path(checkpoint)
    ckpt = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    cfg = ckpt.get("config") or {}
    model_classes = list(ckpt["class_names"])
    spec = PreprocessSpec.from_dict(ckpt["preprocess"])
    cache = cache if cache is not None and cache.spec == spec else DecodedCache(spec, cfg.get("cache_dir"))
    if part not in ("test", "val"):
        raise EvaluateError(f"part must be 'test' or 'val', got {part!r}")

    external = data is not None and split is None
    source = str(data if data is not None else cfg.get("data", ""))
    if not source:
        raise EvaluateError("no data: pass --data (the checkpoint does not name its training data)")
    # the checkpoint's own data: read as it was for training (its --allow-outside-paths)
    outside_ok = allow_outside_paths or (not external and bool(cfg.get("allow_outside_paths")))
    index, bad = readable_index(source, group_regex if external else cfg.get("group_regex"), strict, cache,
                                allow_outside_paths=outside_ok)
    if external:
        mapping = match_classes(list(index.class_names), model_classes)
        idx = list(range(len(index.samples)))
        where = f"external data {source}"
        tag = "external"
    else:
        sp = matching_split(Split.load(split) if split is not None else _split_from_checkpoint(ckpt), index, bad)
        if index.class_names != model_classes:
            raise EvaluateError(f"class name mismatch: split/data {index.class_names} vs model {model_classes}")
        mapping = {i: i for i in range(len(model_classes))}
        fold = int(cfg.get("fold", 0)) if fold is None else fold
        train_idx, val_idx, test_idx = sp.partition(fold)
        idx = test_idx if part == "test" else val_idx
        where = (f"{part} photos of {sp.fold_name(fold)} ({source})" if sp.holdout is not None
                 else f"{part} fold {fold if part == 'test' else (fold + 1) % sp.folds} of {sp.folds} ({source})")
        tag = part
        _refuse_seen_photos(ckpt, [index.relpath(index.samples[i]) for i in idx], part, where)
    if not idx:
        raise EvaluateError(f"nothing to evaluate: {where} holds no readable images")
    overlap = training_overlap(ckpt, [index.samples[i].path for i in idx]) if external else None

    labels = index.labels()
    y_true = np.array([mapping[int(labels[i])] for i in idx], dtype=np.int64)
    images = [cache.get(index.samples[i].path) for i in idx]
    dev = resolve_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    loader = build_eval_loader(CachedImageDataset(images, y_true.tolist(), eval_transform(spec)),
                               batch_size=batch_size, workers=0)
    logits, _ = predict_logits(model, loader, dev)
    t = float(ckpt.get("temperature", 1.0))
    probs, probs_raw = softmax(logits, t), softmax(logits)
    m = classification_metrics(y_true, probs, model_classes, probs_uncalibrated=probs_raw, n_bootstrap=n_bootstrap)
    m.update(temperature=t, evaluated_on=where, model_name=ckpt["model_name"],
             checkpoint=str(ckpt_path) if ckpt_path else None, unreadable=[list(b) for b in bad],
             model_problems=checkpoint_problems(ckpt))  # a collapsed model's metrics must not pass unremarked
    thr = effective_abstain_threshold(float(ckpt.get("abstain_threshold", 0.0)), len(model_classes))
    kept = probs.max(1) >= thr
    m["abstain"] = {"threshold": thr, "coverage": float(kept.mean()),
                    "accuracy_kept": float((probs.argmax(1) == y_true)[kept].mean()) if kept.any() else math.nan}
    if overlap is not None:
        m["training_overlap"] = overlap
    skin = [index.samples[i].skin_type for i in idx]
    if any(s not in (None, "") for s in skin):
        m["by_skin_type"] = group_metrics(y_true, probs, skin, len(model_classes))

    out_dir = Path(out) if out else (ckpt_path.parent if ckpt_path else Path(".")) / f"eval-{tag}"
    if out_dir.exists() and not out_dir.is_dir():
        raise EvaluateError(f"--out {out_dir} is a file, not a folder for the report; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    m["out_dir"] = str(out_dir)
    paths = np.array([index.relpath(index.samples[i]) for i in idx])
    np.savez(out_dir / f"{tag}_predictions.npz", y_true=y_true, probs=probs, logits=logits, paths=paths,
             class_names=np.array(model_classes))
    _write_plots_and_report(m, out_dir, probs_raw, probs, y_true, ckpt_path, plots)
    return m


def _write_plots_and_report(m: dict[str, Any], out_dir: Path, probs_raw: np.ndarray, probs: np.ndarray,
                            y_true: np.ndarray, ckpt_path: Path | None, plots: bool) -> None:
    """The PNG plots (when `plots`), report.md, then metrics.json (atomically: `hypoderm cv` takes its
    presence to mean "this fold is done")."""
    if plots:
        from hypoderm.engine import plots as P

        P.plot_confusion_matrix(m["confusion_matrix"], m["class_names"], out_dir / "confusion_matrix.png")
        P.plot_reliability(reliability_bins(probs_raw, y_true), reliability_bins(probs, y_true),
                           m["ece_before"], m["ece_after"], out_dir / "reliability.png")
        if ckpt_path is not None:
            P.plot_training_curves(ckpt_path.parent / "metrics.jsonl", out_dir / "training_curves.png")
    (out_dir / "report.md").write_text(render_report(m, out_dir))
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(m, indent=1, default=float) + "\n")
    tmp.replace(out_dir / "metrics.json")


def _refuse_seen_photos(ckpt: dict[str, Any], paths: list[str], part: str, where: str) -> None:
    """EvaluateError when photos that trained (or, for "test", selected) the checkpoint would be
    reported as held out."""
    roles = checkpoint_roles(ckpt)
    if roles is None:
        return
    bad_roles = ("train", "val") if part == "test" else ("train",)
    seen = [p for p in paths if roles.get(p) in bad_roles]
    if seen:
        final = bool((ckpt.get("config") or {}).get("final"))
        why = ("a --final checkpoint trained on every fold except its validation fold"
               if final else "those folds trained or validated it")
        raise EvaluateError(
            f"refusing to report {part} metrics on {where}: {len(seen)} of {len(paths)} photos trained "
            f"{'or selected ' if part == 'test' else ''}this checkpoint ({why}). Evaluate it on photos it never saw: "
            "--data OTHER_FOLDER (overlap is checked by file hash), or the test fold of a non-final run.")


def _fmt(x: float) -> str:
    return fmt(x, missing="n/a")


def render_report(m: dict[str, Any], out_dir: Path) -> str:
    """A readable Markdown report of one evaluation."""
    ci = m.get("ci95", {})

    def with_ci(key: str) -> str:
        return _fmt(m[key]) + (f" (95% CI {_fmt(ci[key][0])}–{_fmt(ci[key][1])})" if key in ci else "")

    names = m["class_names"]
    lines = [f"# Evaluation: {m['model_name']}", "",
             f"Evaluated on {m['evaluated_on']}: {m['n']} images. Checkpoint: `{m['checkpoint']}`.", "",
             *(f"**Warning: this checkpoint looks broken: {p['message']}.** Do not ship it.\n"
               for p in m.get("model_problems", [])),
             "| metric | value |", "|---|---|",
             f"| accuracy | {with_ci('accuracy')} |", f"| macro-F1 | {with_ci('macro_f1')} |",
             f"| weighted-F1 | {_fmt(m['weighted_f1'])} |",
             f"| ROC-AUC (one-vs-rest, macro) | {_fmt(m['roc_auc_ovr'])} |",
             f"| ECE, temperature 1 | {_fmt(m['ece_before'])} |",
             f"| ECE, temperature {m['temperature']:.3f} (fitted on validation) | {_fmt(m['ece_after'])} |",
             f"| answered at abstain threshold {m['abstain']['threshold']:.3f} | {m['abstain']['coverage']:.1%} "
             f"(accuracy {_fmt(m['abstain']['accuracy_kept'])}) |", "",
             "## Per class", "", "| class | precision | recall | F1 | ROC-AUC | support |", "|---|---|---|---|---|---|"]
    for c in names:
        p = m["per_class"][c]
        lines.append(f"| {c} | {_fmt(p['precision'])} | {_fmt(p['recall'])} | {_fmt(p['f1'])} | "
                     f"{_fmt(p['roc_auc'])} | {p['support']} |")
    lines += ["", "## Confusion matrix (rows: true, columns: predicted)", "",
              "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for c, row in zip(names, m["confusion_matrix"], strict=True):
        lines.append(f"| **{c}** | " + " | ".join(str(v) for v in row) + " |")
    if "by_skin_type" in m:
        lines += ["", "## By skin type", "", "| skin type | n | accuracy | macro-F1 |", "|---|---|---|---|"]
        for g, v in m["by_skin_type"].items():
            lines.append(f"| {g} | {v['n']} | {_fmt(v['accuracy'])} | {_fmt(v['macro_f1'])} |")
    ov = m.get("training_overlap")
    if ov is not None:
        if not ov["checked"]:
            lines += ["", f"Overlap with the training photos was not checked: {ov['reason']}."]
        elif ov["n"]:
            lines += ["", f"**Warning: {ov['n']} of {ov['of']} photos are byte-identical to photos that trained or "
                      "validated this checkpoint**; these metrics are not independent of training."]
        else:
            lines += ["", "None of these photos is byte-identical to a training or validation photo "
                      f"({ov['training_data']})."]
    if m.get("unreadable"):
        lines += ["", f"{len(m['unreadable'])} unreadable image(s) were skipped: "
                  + ", ".join(f"`{p}` ({r})" for p, r in m["unreadable"][:10])]
    lines += ["", "## Plots", ""]
    for png in ("confusion_matrix.png", "reliability.png", "training_curves.png"):
        if (out_dir / png).is_file():
            lines.append(f"![{png[:-4]}]({png})")
    lines += ["", "hypoderm is a decision aid for clinicians, not a medical device.", ""]
    return "\n".join(lines)
