"""Every number the model card quotes comes from a recorded file: the bundled model's metadata, its export report,
and the benchmark summaries written by the commands the card prints. Reformat the recorded value the way the card
writes it and look for it; a retrained model or a re-run benchmark that changes a number fails here until the
card is updated."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hypoderm.inference import bundled_model, load_metadata

REPO = Path(__file__).resolve().parents[1]
CARD = " ".join((REPO / "MODEL_CARD.md").read_text().split())  # line breaks do not matter
ORIGINS = REPO / "benchmarks" / "origins"
# the bundled model's recipe (scripts/train_bundled_model.sh): its held-out runs, packed into screen.json keyed by path
RECIPE = "v2-imagenet-cf-realoe-mnv3s"


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

    model = create_model(load_metadata(bundled_model())["model_name"], num_classes=3)
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters at three classes" in CARD


def test_card_quotes_the_held_out_origin_run() -> None:
    """Every (held-out origin, testable class) row of the recipe's held-out runs is in the card's table, as
    benchmarks/origins/heldout_rows.py prints it; both testable classes appear."""
    pack = _load(ORIGINS / "screen.json")
    summaries = {k: v["holdout"] for k, v in pack.items()
                 if k.startswith(f"{RECIPE}/holdout") and k.endswith("/summary.json")}
    assert summaries, f"no held-out runs of {RECIPE} in screen.json"
    classes = set()
    for h in summaries.values():
        base = h["baseline"]["reports"]
        for origin, report in h["model"].items():
            for cls, r in report["per_class"].items():
                if not r.get("testable"):
                    continue
                classes.add(cls)
                others = ", ".join(f"{c} {pct(v)}" for c, v in sorted(r["called"].items(), key=lambda kv: -kv[1])
                                   if c != cls and v >= 0.005) or "-"
                cells = [f"`{origin}`", f"{cls} ({r['n']})", pct(r["recall"]), others, pct(r["answered"]),
                         pct(r["called_ok"].get("vitiligo", 0.0)), pct(base[origin]["per_class"][cls]["recall"])]
                assert "| " + " | ".join(cells) + " |" in CARD, cells
    assert classes == {"normal_skin", "other_lesion"}  # vitiligo has one origin: untestable, and the card says so
    assert "no held-out-origin test can test vitiligo" in CARD.lower().replace("**", "")


def test_card_quotes_the_non_skin_results_held_out_by_origin() -> None:
    e2e = _load(REPO / "benchmarks" / "nonskin" / "real_oe" / "end_to_end.json")
    totals = e2e["totals"]
    assert (f"{100 * totals['real_oe_held_out']['not skin centre']['ok']:.1f}% of the 1,715 real non-skin photos "
            f"(centre squares) and {100 * totals['real_oe_held_out']['not skin closeup']['ok']:.1f}% of close-ups, "
            f"against {100 * totals['bundled-v1']['not skin centre']['ok']:.1f}% and "
            f"{100 * totals['bundled-v1']['not skin closeup']['ok']:.1f}%") in CARD
    by_origin = {r["origin"]: r["real_oe_held_out"]["ok"] for r in e2e["rows"]
                 if r["side"] == "not skin" and r["view"] == "centre"}
    for word, origin in (("pastries", "bakery"), ("clothing", "clothing"), ("pigs", "pig"), ("kangaroos", "kangaroo"),
                         ("raccoons", "raccoon")):
        assert f"{word} {100 * by_origin[origin]:.1f}%" in CARD, origin
    assert by_origin["sroie"] == 0.0 and "receipts 0%" in CARD


def test_card_names_the_weights_it_started_from() -> None:
    md = load_metadata(bundled_model())
    assert md["pretrained"]["sha256"] in CARD and md["pretrained"]["file"] in CARD
    assert "Apache License, Version 2.0" in CARD and "fine-tuned from ImageNet weights" in CARD


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


def test_card_quotes_where_the_heat_map_lies() -> None:
    """The heat-map sentence quotes benchmarks/gradcam/on_skin_v2.json (the bundled model on its validation photos)."""
    run = _load(REPO / "benchmarks" / "gradcam" / "on_skin_v2.json")
    assert run["model_sha256"] == hashlib.sha256(bundled_model().read_bytes()).hexdigest()  # this model's map
    assert run["only"] == "val.csv"
    pooled = run["pooled"]["held_out"]
    assert f"{pooled['n']} answered validation photos" in CARD
    assert f"(heat / area {pooled['skin_heat_over_area']:.2f})" in CARD
    assert pooled["share_with_most_heat_on_dark"] == 0.0 and "none has most of its heat on a dark backdrop" in CARD


def test_card_states_each_answer_bar_of_the_shipped_model() -> None:
    """A class with its own, higher bar (`answer_thresholds`, `hypoderm export --answer-threshold`) answers less often:
    the card says so, with the bar's value and the benchmark that chose it."""
    md = load_metadata(bundled_model())
    bars = md.get("answer_thresholds") or {}
    assert bars, "the bundled model has no answer bar: drop this test with the card's section"
    for name, p in bars.items():
        assert f'`answer_thresholds: {{"{name}": {p}}}`' in CARD and f"--answer-threshold {name}={p}" in CARD
    grid = _load(ORIGINS / "answer_thresholds.json")
    chosen = next(r for r in grid["rows"] if r["bar"] == bars.get(grid["class"]))
    found = chosen["ordinary_cv"][f"{grid['class']}_found_answered"]
    assert f"{pct(found)} of the {chosen['ordinary_cv'][grid['class'] + '_n']} vitiligo photos" in CARD
