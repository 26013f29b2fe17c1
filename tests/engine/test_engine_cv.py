"""`hypoderm cv`: k folds, mean ± std summary, pooled predictions, resumable fold by fold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hypoderm.engine.config import TrainConfig, TrainError
from hypoderm.engine.cv import run_cv, summarize


def cfg(data: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), model="hypodermnet", folds=3, size=32, epochs=2, batch_size=4, max_steps=1,
                outlier_exposure=0.0, progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


def test_summarize_mean_and_sample_std() -> None:
    s = summarize({0: {"accuracy": 0.5, "n": 10, "per_class": {"a": {"f1": 0.2}}},
                   1: {"accuracy": 0.7, "n": 12, "per_class": {"a": {"f1": 0.4}}},
                   2: {"accuracy": 0.9, "n": 11, "per_class": {"a": {"f1": 0.6}}}})
    assert s["mean"]["accuracy"] == pytest.approx(0.7) and s["std"]["accuracy"] == pytest.approx(0.2)
    assert s["mean"]["f1/a"] == pytest.approx(0.4) and "n" not in s["mean"]


@pytest.mark.slow
def test_cv_runs_every_fold_and_resumes(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cv"
    # killed during fold 0, right after its first epoch
    assert run_cv(cfg(image_folder, stop_after_epoch=1), out, n_bootstrap=0) == {}
    assert (out / "fold0" / "last.pt").is_file() and not (out / "fold0" / "metrics.json").exists()
    s = run_cv(cfg(image_folder), out, n_bootstrap=20)
    assert "resumed from" in capsys.readouterr().out
    assert s["folds"] == [0, 1, 2]
    per_fold = [json.loads((out / f"fold{f}" / "metrics.json").read_text()) for f in range(3)]
    assert s["mean"]["macro_f1"] == pytest.approx(np.mean([m["macro_f1"] for m in per_fold]))
    assert s["std"]["accuracy"] == pytest.approx(np.std([m["accuracy"] for m in per_fold], ddof=1))
    table = (out / "summary.md").read_text()
    assert "mean ± std" in table and "macro_f1" in table
    pooled = np.load(out / "pooled_test_predictions.npz")
    assert len(pooled["y_true"]) == 24 and pooled["probs"].shape == (24, 3)  # every image tested once
    # a second call finds every fold done and trains nothing
    stamps = [(out / f"fold{f}" / "metrics.json").stat().st_mtime_ns for f in range(3)]
    run_cv(cfg(image_folder), out, n_bootstrap=20)
    assert capsys.readouterr().out.count("already done") == 3
    assert stamps == [(out / f"fold{f}" / "metrics.json").stat().st_mtime_ns for f in range(3)]
    with pytest.raises(TrainError, match="other settings.*lr"):
        run_cv(cfg(image_folder, lr=0.5), out)
    # the fine-tuning schedule is part of the experiment too
    with pytest.raises(TrainError, match=r"other settings \(backbone_lr_scale, head_epochs\)"):
        run_cv(cfg(image_folder, backbone_lr_scale=0.5, head_epochs=1), out)


def test_three_folds_say_they_train_on_a_third(capsys: pytest.CaptureFixture) -> None:
    """Item 12: `cv --folds 3` trains each model on a third of the data: said, with a suggestion."""
    from hypoderm.engine.cv import protocol_line

    assert "trains on a third of the photos (1/3)" in protocol_line(3) and "--folds 5" in protocol_line(3)
    assert "60%" in protocol_line(5) and "--folds 5" not in protocol_line(5)
    row = {"accuracy": 0.6, "macro_f1": 0.5, "weighted_f1": 0.5, "roc_auc_ovr": 0.7, "ece_before": 0.1,
           "ece_after": 0.1}
    s = summarize({0: row, 1: row, 2: row})
    s["k"] = 3
    from hypoderm.engine.cv import render_summary

    assert "a third of the photos" in render_summary(s, cfg(Path("d")))


@pytest.mark.slow
def test_cv_first_line_states_the_protocol(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_cv(cfg(image_folder, stop_after_epoch=1), tmp_path / "cv", n_bootstrap=0)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("3-fold cross-validation: each fold's model trains on a third")


@pytest.mark.slow
def test_held_out_cv_decodes_each_photo_once_and_builds_the_outlier_bank_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Issue 29: each fold decoded every photo again and rebuilt the 723-picture outlier bank; the first line
    described ordinary CV and the end never said where the summary went."""
    import hypoderm.data.shortcut.features as features
    import hypoderm.imaging.io as imaging_io
    from hypoderm.cli import main
    from hypoderm.engine import outliers
    from hypoderm_testkit.datasets import make_origin_manifest

    manifest = make_origin_manifest(tmp_path / "data")
    photos = len(manifest.read_text().splitlines()) - 1
    decodes: list[int] = []
    real_decode = imaging_io.load_rgb_bytes

    def counting_decode(data: bytes, *args: object, **kwargs: object):  # noqa: ANN202
        decodes.append(len(data))
        return real_decode(data, *args, **kwargs)

    monkeypatch.setattr(imaging_io, "load_rgb_bytes", counting_decode)  # load_rgb and the cache call it here
    monkeypatch.setattr(features, "load_rgb_bytes", counting_decode)  # the photo-style baseline's own reads
    builds: list[int] = []

    class CountingBank(outliers.OutlierBank):  # the lazy bank: draws only what the batches show
        def __init__(self, spec, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
            builds.append(spec.resize_size)
            super().__init__(spec, *args, **kwargs)

    monkeypatch.setattr(outliers, "OutlierBank", CountingBank)
    outliers._shared_bank.cache_clear()
    out = tmp_path / "cv"
    assert main(["cv", "--data", str(manifest), "--hold-out-by", "origin", "--only-folds", "0,1", "--folds", "3",
                 "--size", "32", "--epochs", "1", "--batch-size", "4", "--max-steps", "1", "--outlier-exposure", "0.5",
                 "--device", "cpu", "--no-progress", "--bootstrap", "0", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Held-out-origin evaluation: 3 folds, one per origin (clinic, hands, web)")
    assert len(decodes) == photos  # two folds trained and tested, the style baseline measured: one decode each
    assert builds == [37]  # the bank, at the resize size of 32 px, built once for both folds
    assert lines[1].startswith(f"photos: decoded {photos} photos once (cache: {photos} misses, 0 hits")
    assert any(line.startswith(f"photos: decoded {photos} photos once (cache: {photos} misses, ") and
               not line.startswith(f"photos: decoded {photos} photos once (cache: {photos} misses, 0 hits")
               for line in lines[2:])
    assert lines[-1].startswith(f"summary written to {out / 'summary.md'} and {out / 'summary.json'}")
    outliers._shared_bank.cache_clear()


def test_cv_first_line_describes_the_protocol_it_runs(tmp_path: Path) -> None:
    from hypoderm.data.dataset import load_index
    from hypoderm.data.splits import make_split
    from hypoderm.engine.cv import first_line
    from hypoderm_testkit.datasets import make_origin_manifest

    manifest = make_origin_manifest(tmp_path / "data")
    held = first_line(cfg(manifest, hold_out_by="origin", folds=5), tmp_path / "no-split.json")
    assert held.startswith("Held-out-origin evaluation: 3 folds, one per origin (clinic, hands, web)")
    assert "about 1/5 of their photos" in held and "tested on the origin it never saw" in held
    assert first_line(cfg(manifest), tmp_path / "no-split.json").startswith("3-fold cross-validation")
    split = tmp_path / "split.json"
    make_split(load_index(str(manifest)), folds=4, seed=0).save(split)
    assert first_line(cfg(manifest), split).startswith("4-fold cross-validation")  # the split file's own folds
