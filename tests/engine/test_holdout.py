"""Held-out-origin evaluation (issue 19): splits held out by a manifest column, the per-value report (what a
one-class source can measure, AUC where two classes are present, single-source classes named), the
source-balanced sampler, and `hypoderm cv --hold-out-by` end to end on synthetic photos with an origin column."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hypoderm.data.dataset import DatasetError, load_index
from hypoderm.data.splits import MISSING_VALUE, Split, column_value, make_holdout_split, make_split
from hypoderm.engine.holdout import balanced_recall, holdout_report, render_holdout_table, single_source_classes
from hypoderm_testkit.datasets import make_origin_manifest


@pytest.fixture
def origin_manifest(tmp_path: Path) -> Path:
    return make_origin_manifest(tmp_path / "ms")


def test_holdout_split_tests_each_origin_on_a_model_that_never_saw_it(origin_manifest: Path, tmp_path: Path) -> None:
    index = load_index(origin_manifest)
    split = make_holdout_split(index, "origin", val_folds=4, seed=0)
    assert split.holdout == "origin" and split.values == ["clinic", "hands", "web"] and split.folds == 3
    origin = {index.relpath(s): column_value(s, "origin") for s in index.samples}
    for f, value in enumerate(split.values):
        train, val, test = split.partition(f)
        assert {origin[split.samples[i].path] for i in test} == {value}
        assert value not in {origin[split.samples[i].path] for i in train + val}
        assert set(train).isdisjoint(val) and len(train) + len(val) + len(test) == len(index.samples)
        assert val, "every fold validates on the other origins"
    # validation photos are drawn by group: a patient is never split between train and validation
    val_of_group: dict[str, set[bool]] = {}
    for s in split.samples:
        val_of_group.setdefault(s.group, set()).add(s.val)
    assert all(len(v) == 1 for v in val_of_group.values())
    # the file keeps the column, the values and the validation marks
    split.save(tmp_path / "s.json")
    again = Split.load(tmp_path / "s.json")
    assert again == split and again.fold_name(2) == "origin=web"
    assert make_split(index, folds=3).holdout is None and make_split(index, folds=3).fold_name(1) == "fold 1"


def test_holdout_split_refuses_what_would_leak_or_cannot_be_held_out(origin_manifest: Path, tmp_path: Path) -> None:
    index = load_index(origin_manifest)
    with pytest.raises(DatasetError, match="no column 'site'.*origin"):
        make_holdout_split(index, "site")
    with pytest.raises(DatasetError, match="at least 2 values"):
        make_holdout_split(load_index(_one_origin(origin_manifest, tmp_path)), "origin")
    # one patient photographed in two origins: both sides of a fold
    rows = _rows(origin_manifest)
    rows[0]["group"] = rows[-1]["group"]
    leak = tmp_path / "leak" / "index.csv"
    leak.parent.mkdir()
    shutil.copytree(origin_manifest.parent / "images", leak.parent / "images")  # symlinks leading out are refused
    _write(leak, rows)
    with pytest.raises(DatasetError, match="1 group.*two values of 'origin'"):
        make_holdout_split(load_index(leak), "origin")


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _one_origin(manifest: Path, tmp_path: Path) -> Path:
    rows = [{**r, "origin": "same"} for r in _rows(manifest)]
    out = tmp_path / "one" / "index.csv"
    out.parent.mkdir()
    shutil.copytree(manifest.parent / "images", out.parent / "images")  # symlinks leading out are refused
    _write(out, rows)
    return out


def test_empty_cells_are_held_out_together(origin_manifest: Path, tmp_path: Path) -> None:
    rows = _rows(origin_manifest)
    for r in rows:
        if r["origin"] == "hands":
            r["origin"] = ""
    out = tmp_path / "gaps" / "index.csv"
    out.parent.mkdir()
    shutil.copytree(origin_manifest.parent / "images", out.parent / "images")  # symlinks leading out are refused
    _write(out, rows)
    assert make_holdout_split(load_index(out), "origin").values == [MISSING_VALUE, "clinic", "web"]


def test_report_measures_recall_mistakes_and_auc_only_where_they_mean_something() -> None:
    names = ["normal", "other", "vitiligo"]
    # a one-class held-out source: 4 healthy photos, 1 called vitiligo with confidence
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.5, 0.1, 0.4], [0.05, 0.05, 0.9]])
    rep = holdout_report([0, 0, 0, 0], probs, names, trained=names, threshold=0.7)
    row = rep["per_class"]["normal"]
    assert row["n"] == 4 and row["recall"] == 0.75 and row["called"]["vitiligo"] == 0.25 and row["testable"]
    assert row["answered"] == 0.5 and row["called_ok"] == {"normal": 0.25, "other": 0.0, "vitiligo": 0.25}
    assert rep["roc_auc"] is None and rep["untestable"] == []  # one class: no AUC
    # two classes present and trained: AUC; one of them never trained on: no AUC, and it is named
    y = [0, 0, 2, 2]
    two = holdout_report(y, np.array([[0.9, 0, 0.1], [0.7, 0, 0.3], [0.4, 0, 0.6], [0.2, 0, 0.8]]), names, names)
    assert two["roc_auc"] == 1.0
    untrained = holdout_report(y, probs, names, trained=["normal", "other"])
    assert untrained["roc_auc"] is None and untrained["untestable"] == ["vitiligo"]
    assert untrained["per_class"]["vitiligo"]["testable"] is False
    assert "two classes present" in untrained["roc_auc_note"]
    assert balanced_recall({"a": rep, "b": untrained}) == pytest.approx(np.mean([0.75, 1.0]))  # vitiligo: untestable
    table = "\n".join(render_holdout_table({"a": rep, "b": untrained}))
    assert "| a | normal | 4 | 75% | vitiligo 25% |" in table and "untestable" in table
    assert single_source_classes({"normal": ["web", "clinic"], "vitiligo": ["web", "web"]}) == {"vitiligo": "web"}
    with pytest.raises(ValueError, match="shape"):
        holdout_report([0], probs, names, names)


def test_cell_sampler_balances_classes_and_sources_by_square_root() -> None:
    import torch

    from hypoderm.engine.data import cell_balanced_sampler, cell_weights

    labels = [0] * 100 + [0] * 4 + [1] * 10
    cells = ["big"] * 100 + ["small"] * 4 + ["only"] * 10
    w = cell_weights(labels, cells, num_classes=3)
    assert w.sum() == pytest.approx(1.0)
    assert sum(w[104:]) == pytest.approx(0.5)  # the two classes present are drawn equally
    big, small = sum(w[:100]), sum(w[100:104])
    assert big / small == pytest.approx(np.sqrt(100) / np.sqrt(4))  # sources inside a class: 10:2, not 100:4
    draws = list(cell_balanced_sampler(labels, cells, 3, torch.Generator().manual_seed(0)))
    assert len(draws) == len(labels)
    with pytest.raises(ValueError, match="cell values"):
        cell_weights(labels, cells[:-1], 3)


@pytest.mark.slow
def test_cv_holds_out_each_origin_end_to_end(origin_manifest: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    from hypoderm.engine.config import TrainConfig
    from hypoderm.engine.cv import run_cv

    cfg = TrainConfig(data=str(origin_manifest), model="hypodermnet", folds=4, size=32, epochs=1, batch_size=4,
                      outlier_exposure=0.0, max_steps=1, progress=False, device="cpu", hold_out_by="origin",
                      balance_by="origin", counterfactual="normal:vitiligo")
    out = tmp_path / "cv"
    s = run_cv(cfg, out, n_bootstrap=0)
    printed = capsys.readouterr().out
    assert "classes with a single origin, which no fold can test: other (only clinic), vitiligo (only web)" in printed
    h = s["holdout"]
    assert h["values"] == ["clinic", "hands", "web"] and h["single_source"] == {"other": "clinic", "vitiligo": "web"}
    # the web fold trains without vitiligo: it is untestable there; the hands fold tests healthy skin alone
    assert h["model"]["web"]["untestable"] == ["vitiligo"] and h["model"]["hands"]["per_class"]["normal"]["testable"]
    assert h["model"]["clinic"]["untestable"] == ["other"]
    assert 0.0 <= h["balanced_recall"] <= 1.0
    assert set(h["baseline"]["reports"]) == {"clinic", "hands", "web"}  # the photo-style baseline, same folds
    assert h["predictability"]["column"] == "origin" and len(h["predictability"]["values"]) == 3
    md = (out / "summary.md").read_text()
    assert "Held-out-origin evaluation" in md and "`vitiligo` (only `web`)" in md and "Photo style predicts" in md
    saved = json.loads((out / "summary.json").read_text())
    assert saved["holdout"]["single_source"] == h["single_source"]
    assert json.loads((out / "split.json").read_text())["holdout"] == "origin"
    # an ordinary k-fold run may not reuse that split
    from hypoderm.engine.config import TrainError

    with pytest.raises(TrainError, match="held out by 'origin'.*stratified k-fold"):
        run_cv(cfg.with_(hold_out_by=None, split=str(out / "split.json")), tmp_path / "cv2", n_bootstrap=0)
