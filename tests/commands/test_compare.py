"""`hypoderm compare` end to end on a tiny synthetic dataset, and its resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hypoderm import cli
from hypoderm.study.compare import paired
from hypoderm_testkit.datasets import make_image_folder, make_origin_manifest


@pytest.mark.slow
def test_compare_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    data = make_image_folder(tmp_path / "data", classes=("a", "b"), per_class=9, size=40)
    out = tmp_path / "study"
    argv = ["compare", "--data", str(data), "--models", "mnv3s,hypodermnet", "--folds", "3", "--size", "32",
            "--epochs", "1", "--outlier-exposure", "0",
            "--batch-size", "8", "--out", str(out), "--latency-size", "32", "--runs", "2",
            "--bootstrap", "50", "--device", "cpu", "--no-progress"]
    assert cli.main(argv) == 0
    for name in ("main.md", "paired.md", "results.json", "results.csv", "pareto_latency.png",
                 "pareto_params.png", "split.json"):
        assert (out / name).is_file(), name
    assert not (out / "ablation.md").exists()  # only the ablation preset writes the ablation table
    result = json.loads((out / "results.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"mnv3s", "hypodermnet"}
    for r in rows.values():
        assert 0.0 <= r["macro_f1_mean"] <= 1.0
        lo, hi = r["pooled_ci95"]["macro_f1"]
        assert lo <= r["pooled_macro_f1"] <= hi
        assert r["params"] > 0 and r["ort_ms_median"] > 0
    assert rows["hypodermnet"]["params"] < rows["mnv3s"]["params"]
    assert result["paired"][0]["reference"] == "hypodermnet" and result["paired"][0]["folds"] == 3
    main_md = (out / "main.md").read_text()
    assert "| hypodermnet |" in main_md and "threads=1" in main_md
    assert "trained from scratch" in main_md and "unless pretrained" not in main_md
    assert "Why the per-fold mean and the pooled macro-F1 differ" in main_md

    # second call: every fold is finished, so nothing is trained again
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("models/*/fold*/best.pt")}
    assert len(stamps) == 6
    import hypoderm.engine.cv as cv_module

    def no_training(*a, **k):
        raise AssertionError("compare retrained a finished model")

    monkeypatch.setattr(cv_module, "run_cv", no_training)
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "already done, skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("models/*/fold*/best.pt")} == stamps


@pytest.mark.slow
def test_compare_runs_the_training_recipe_given_and_holds_out_by_origin(tmp_path, capsys):
    """compare takes every training flag (the recipe, balance, abstain target reach each model's runs) and, with
    --hold-out-by, runs the held-out protocol for every model on one shared held-out split, beside the ordinary CV."""
    data = make_origin_manifest(tmp_path / "ms")
    out = tmp_path / "study"
    argv = ["compare", "--data", str(data), "--models", "mnv3s,hypodermnet", "--folds", "3", "--size", "32",
            "--epochs", "1", "--outlier-exposure", "0",
            "--batch-size", "4", "--max-steps", "1", "--out", str(out), "--latency-size", "32",
            "--runs", "2", "--bootstrap", "20", "--device", "cpu", "--no-progress", "--recipe", "standard",
            "--balance", "sampler", "--abstain-target", "0.9", "--hold-out-by", "origin"]
    assert cli.main(argv) == 0
    for m in ("mnv3s", "hypodermnet"):
        saved = json.loads((out / "models" / m / "cv_config.json").read_text())
        assert (saved["recipe"], saved["balance"], saved["abstain_target"]) == ("standard", "sampler", 0.9)
        held = json.loads((out / "models" / m / "holdout-origin" / "summary.json").read_text())["holdout"]
        assert held["values"] == ["clinic", "hands", "web"]
    assert json.loads((out / "split-holdout-origin.json").read_text())["holdout"] == "origin"
    main_md = (out / "main.md").read_text()
    assert "## Held out by origin" in main_md and "| hypodermnet |" in main_md.split("## Held out by origin")[1]
    assert "vitiligo (only web)" in main_md


def test_paired_difference_is_reference_minus_other():
    summaries = {"ref": {"per_fold": {"0": {"macro_f1": 0.9}, "1": {"macro_f1": 0.8}}},
                 "oth": {"per_fold": {"0": {"macro_f1": 0.7}, "1": {"macro_f1": 0.85}}}}
    y = np.array([0, 1, 0, 1, 0, 1])
    preds = {"ref": {"y_true": y, "y_pred": y.copy(), "fold": np.array([0, 0, 0, 1, 1, 1])},
             "oth": {"y_true": y, "y_pred": 1 - y, "fold": np.array([0, 0, 0, 1, 1, 1])}}
    row = paired("ref", "oth", summaries, preds, labels=[0, 1], n_boot=200)
    assert row["mean_diff"] == pytest.approx(0.075)
    assert (row["wins"], row["losses"]) == (1, 1)
    assert row["pooled_diff"] == pytest.approx(1.0)  # perfect vs all wrong
    assert row["pooled_diff_ci95"][0] > 0 and row["p_ref_not_better"] == 0.0


def test_compare_needs_models(capsys, tmp_path):
    assert cli.main(["compare", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "--models or --preset" in capsys.readouterr().err


def test_study_keeps_its_split_and_refuses_another(tmp_path):
    from hypoderm.engine.config import TrainConfig
    from hypoderm.study.compare import run_study

    out = tmp_path / "study"
    out.mkdir()
    (out / "split.json").write_text('{"format": "hypoderm-split/1", "folds": 3}')
    other = tmp_path / "other_split.json"
    other.write_text('{"format": "hypoderm-split/1", "folds": 5}')
    cfg = TrainConfig(data=str(tmp_path), split=str(other), device="cpu")
    with pytest.raises(ValueError, match="another split"):
        run_study(cfg, ["mnv3s"], out)


def _rows(n: int = 12) -> list[dict]:
    rng = np.random.default_rng(0)
    names = ["mnv3s", "mnv3s-eca", "mnv3s-lrelu", "mnv3s-dil", "mnv3s-eca-lrelu", "mnv3s-eca-dil", "mnv3s-lrelu-dil",
             "mnv3s-eca-lrelu-dil", "hypodermnet", "resnet18", "resnet50", "mobilenet_v2"][:n]
    return [{"model": m, "macro_f1_mean": 0.72 + 0.01 * rng.standard_normal(), "macro_f1_std": 0.05,
             "ort_ms_median": 3.3 + 0.05 * i if i < 9 else 20 + 30 * (i - 9),
             "params": 1.5e6 + 1e4 * i if i < 9 else 2e7 * (i - 8)}
            for i, m in enumerate(names)]


def test_pareto_plot_has_labelled_log_ticks_and_no_overlapping_labels(tmp_path):
    """Item 11: close models (the 8 mnv3s variants sit within 0.2 ms) must stay readable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hypoderm.study.compare import plot_pareto

    figs = []
    real_close = plt.close
    plt.close = lambda fig=None: figs.append(fig)
    try:
        paths = plot_pareto(_rows(), tmp_path)
    finally:
        plt.close = real_close
    assert [p.name for p in paths] == ["pareto_latency.png", "pareto_params.png"]
    for fig in figs:
        ax = fig.axes[0]
        fig.canvas.draw()
        ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        lo, hi = ax.get_xlim()
        labelled = zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)
        visible = [t for t, v in labelled if lo <= v <= hi and t.get_text()]
        assert len(visible) >= 3, ticks  # a log axis with readable numbers, not one lonely "10^1"
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert len(legend) == 12 and all(any(r["model"] in t for t in legend) for r in _rows())
        renderer = fig.canvas.get_renderer()
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert len(boxes) == 12
        assert sorted(t.get_text() for t in ax.texts) == sorted(str(i) for i in range(1, 13))
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                assert not boxes[i].overlaps(boxes[j]), (ax.texts[i].get_text(), ax.texts[j].get_text())
        fig.savefig(tmp_path / f"check_{len(ticks)}_{id(fig)}.png", dpi=100)
        real_close(fig)
