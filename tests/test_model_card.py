"""Every number the model card quotes comes from a recorded file: the bundled model's metadata, its export report,
and the benchmark summaries written by the commands the card prints. Reformat the recorded value the way the card
writes it and look for it; a retrained model or a re-run benchmark that changes a number fails here until the
card is updated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hypoderm.inference import bundled_model, load_metadata

REPO = Path(__file__).resolve().parents[1]
CARD = " ".join((REPO / "MODEL_CARD.md").read_text().split())  # line breaks do not matter
ORIGINS = REPO / "benchmarks" / "origins"
# the bundled model's recipe (scripts/train_bundled_model.sh): its run folder, packed into runs.json keyed by path
RECIPE = "crop-tone-oe"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def pct(x: float) -> str:
    return f"{round(100 * x)}%"


def test_card_quotes_the_shipped_metadata() -> None:
    md = load_metadata(bundled_model())
    assert f"temperature **{md['temperature']:.3f}**" in CARD
    assert f"abstain threshold **{md['abstain_threshold']:.3f}**" in CARD
    assert f"(`abstain_threshold`, {md['abstain_threshold']:.3f})" in CARD
    data = md["training_data"]
    train = data["train_counts"]
    assert f"{data['n_train']:,} photos: normal_skin {train['normal_skin']}" in CARD
    assert f"other_lesion {train['other_lesion']}, vitiligo {train['vitiligo']}" in CARD
    assert f"({data['n_train']:,} trained it, {data['n_val']}" in CARD
    assert f"{sum(data['counts'].values()):,} photographs of three classes" in CARD
    assert f"{bundled_model().stat().st_size / 1e6:.2f} MB" in CARD
    agree = md["int8_vs_fp32"]
    assert f"the same top class on {100 * agree['top1_agreement']:.1f}%" in CARD
    assert f"macro-F1 {agree['fp32']['macro_f1']:.3f} vs {agree['int8']['macro_f1']:.3f}" in CARD
    assert f"{agree['gradcam_correlation']['mean']:.3f} on average" in CARD


def test_card_quotes_the_parameter_count() -> None:
    pytest.importorskip("torch")
    from hypoderm.models import create_model

    model = create_model("hypodermnet", num_classes=3)
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters at three classes" in CARD


def test_card_quotes_the_held_out_origin_run() -> None:
    h = _load(ORIGINS / "runs.json")[f"{RECIPE}/holdout/summary.json"]["holdout"]
    base = h["baseline"]["reports"]
    rows = {o: r["per_class"]["normal_skin"] for o, r in h["model"].items() if "normal_skin" in r["per_class"]}
    assert len(rows) == 4  # every healthy origin held out in turn
    for origin, row in rows.items():
        called = row["called"]
        cells = [f"`{origin}`", str(row["n"]), pct(row["recall"]), pct(called["vitiligo"]), pct(called["other_lesion"]),
                 pct(row["called_ok"]["vitiligo"]), pct(base[origin]["per_class"]["normal_skin"]["recall"])]
        assert "| " + " | ".join(cells) + " |" in CARD, cells
    assert f"Balanced held-out recall over the four rows {h['balanced_recall']:.3f}" in CARD
    assert f"same folds) {h['baseline']['balanced_recall']:.3f}" in CARD
    assert f"macro-F1 {h['predictability']['macro_f1_mean']:.3f}" in CARD


def test_card_quotes_the_ordinary_cv_run() -> None:
    s = _load(ORIGINS / "runs.json")[f"{RECIPE}/cv/summary.json"]
    assert f"macro-F1 **{s['mean']['macro_f1']:.3f} ± {s['std']['macro_f1']:.3f}**" in CARD
    assert f"ROC-AUC {s['mean']['roc_auc_ovr']:.3f}" in CARD
    assert f"macro-F1 **{s['shortcut']['macro_f1_mean']:.3f}** on the same folds" in CARD


def test_card_quotes_the_validation_report_and_the_end_to_end_counts() -> None:
    m = _load(ORIGINS / "bundled" / "val_metrics.json")
    lo, hi = m["ci95"]["accuracy"]
    assert f"accuracy {m['accuracy']:.3f} [{lo:.3f}, {hi:.3f}]" in CARD
    lo, hi = m["ci95"]["macro_f1"]
    assert f"macro-F1 {m['macro_f1']:.3f} [{lo:.3f}, {hi:.3f}]" in CARD
    assert f"ECE {m['ece_before']:.3f} -> {m['ece_after']:.3f}" in CARD
    status = _load(ORIGINS / "bundled_status.json")
    refused = sum(r.get("not_skin", 0) for r in status["photos"])
    outcomes = ("right", "wrong", "uncertain", "not_skin")
    photos = sum(sum(v for k, v in r.items() if k in outcomes) for r in status["photos"])
    assert f"{refused} photos refused as not skin ({100 * refused / photos:.1f}%)" in CARD
    synthetic = [v for k, v in status["nonskin"].items() if k.startswith("synthetic")]
    total = {k: sum(c.get(k, 0) for c in synthetic) for k in ("wrong", "uncertain", "not_skin")}
    n = sum(total.values())
    assert (f"({n} synthetic TEST pictures): {total['wrong']} answered with a diagnosis "
            f"({pct(total['wrong'] / n)}), {total['uncertain']} uncertain ({pct(total['uncertain'] / n)}), "
            f"{total['not_skin']} refused ({pct(total['not_skin'] / n)})" in CARD)
