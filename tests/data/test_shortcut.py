"""hypoderm.data.shortcut: trivial photo features, and the cross-validated photo-style baseline that
must catch a planted shortcut (size, background) and must not flag a set where only the lesion differs."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hypoderm.cli import main as cli_main
from hypoderm.data.audit import audit
from hypoderm.data.dataset import load_index
from hypoderm.data.shortcut import (
    FEATURE_NAMES,
    FILE_FEATURES,
    PIXEL_FEATURES,
    ShortcutError,
    file_features,
    fit_baseline,
    ita_band,
    photo_features,
    score_baseline,
    shortcut_baseline,
)
from hypoderm.data.splits import make_split
from hypoderm.imaging.colour import ita_degrees, rgb_to_lab

# skin tones (sRGB) from very light to dark, all inside the YCrCb skin rule
TONES = ((233, 196, 170), (214, 170, 136), (190, 140, 100), (160, 110, 75), (120, 80, 55), (90, 60, 40))
BACKGROUNDS = ((245, 245, 245), (40, 40, 48), (70, 110, 160), (120, 150, 90), (200, 190, 150), (150, 60, 60))


def photo(rng: np.random.Generator, size: tuple[int, int], background: tuple[int, int, int],
          lesion: bool) -> Image.Image:
    """A synthetic 'photo': a backdrop, a skin-toned subject with a smooth random pattern and noise
    (random tone, margin and noise level) and, if `lesion`, a small pale patch in the middle."""
    w, h = size
    noise = rng.uniform(2.0, 10.0)
    arr = np.empty((h, w, 3), dtype=np.float64)
    arr[:] = np.array(background, dtype=np.float64) + rng.normal(0, 3, size=3)
    tone = np.array(TONES[rng.integers(len(TONES))], dtype=np.float64) + rng.normal(0, 6, size=3)
    mx, my = (rng.uniform(0.06, 0.22, size=2) * (w, h)).astype(int)
    coarse = rng.uniform(-25, 25, size=(6, 6)).astype(np.float32)
    pattern = np.asarray(Image.fromarray(coarse, mode="F").resize((w - 2 * mx, h - 2 * my),
                                                                  Image.Resampling.BICUBIC), dtype=np.float64)
    arr[my:h - my, mx:w - mx] = tone + pattern[:, :, None]
    if lesion:
        yy, xx = np.mgrid[0:h, 0:w]
        cy, cx = h / 2 + rng.uniform(-3, 3), w / 2 + rng.uniform(-3, 3)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < (0.07 * min(w, h)) ** 2
        arr[disc] = arr[disc] * 0.1 + 235 * 0.9  # near-neutral, like depigmented skin: fails the skin rule
    arr += rng.normal(0, noise, size=arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(56, 100)), int(rng.integers(56, 100))


def make_set(root: Path, kind: str, per_class: int = 30, seed: int = 0) -> Path:
    """ImageFolder with classes `lesion` and `normal`.
    kind "clean": only the lesion differs (sizes, backgrounds, tones from one distribution);
    "size": both classes look alike (lesions in both) but `normal` is always 64x64, `lesion` 96x80;
    "background": alike, but `normal` always has a near-white backdrop, `lesion` a dark one."""
    rng = np.random.default_rng(seed)
    for label in ("lesion", "normal"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = random_size(rng)
            background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
            lesion = label == "lesion"
            if kind == "size":
                size, lesion = ((96, 80) if label == "lesion" else (64, 64)), bool(rng.integers(2))
            elif kind == "background":
                background, lesion = ((40, 40, 48) if label == "lesion" else (245, 245, 245)), bool(rng.integers(2))
            elif kind != "clean":
                raise ValueError(kind)
            photo(rng, size, background, lesion).save(root / label / f"{label}_{i:03d}.png")
    return root


def baseline_of(root: Path):  # noqa: ANN201 - test helper
    index = load_index(root)
    return shortcut_baseline(index, make_split(index, folds=5, seed=0))


# --- features ---------------------------------------------------------------------------------

def test_ita_bands() -> None:
    assert [ita_band(v) for v in (60, 55, 41.5, 41, 30, 12, 0, -30, -45)] == [
        "very light (>55)", "light (41-55)", "light (41-55)", "intermediate (28-41)", "intermediate (28-41)",
        "tan (10-28)", "brown (-30-10)", "dark (<-30)", "dark (<-30)"]
    assert ita_band(float("nan")) == "no skin pixels"


def test_photo_features_of_a_known_image() -> None:
    skin, backdrop = (200, 150, 120), (20, 40, 200)
    arr = np.full((40, 60, 3), backdrop, dtype=np.uint8)
    arr[10:30, 10:50] = skin
    f = photo_features(Image.fromarray(arr, "RGB"))
    assert list(f) == list(FEATURE_NAMES)
    assert (f["width"], f["height"], f["aspect"]) == (60.0, 40.0, 1.5)
    assert f["skin_fraction"] == pytest.approx(20 * 40 / (40 * 60))
    assert (f["skin_r_mean"], f["skin_g_mean"], f["skin_b_mean"]) == (200.0, 150.0, 120.0)
    assert f["skin_r_std"] == 0.0
    lab = rgb_to_lab(np.array([skin], dtype=np.uint8))
    assert f["ita"] == pytest.approx(ita_degrees(float(lab[0, 0]), float(lab[0, 2])))
    assert (f["border_r"], f["border_g"], f["border_b"], f["border_std"]) == (20.0, 40.0, 200.0, 0.0)
    assert f["border_skin_fraction"] == 0.0  # the 5 px border is all backdrop
    assert f["sharpness"] > 0 and f["colourfulness"] > 0
    assert all(math.isnan(f[n]) for n in FILE_FEATURES)  # no file: unknown, not 0
    grey = photo_features(Image.new("RGB", (8, 8), (128, 128, 128)))
    assert grey["skin_fraction"] == 0.0 and math.isnan(grey["ita"]) and math.isnan(grey["skin_r_mean"])
    assert grey["sharpness"] == 0.0 and grey["colourfulness"] == 0.0


def test_file_features_size_and_exif(tmp_path: Path) -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 50, 3), dtype=np.uint8), "RGB")
    img.save(tmp_path / "plain.jpg", quality=90)
    exif = Image.Exif()
    exif[0x010F] = "SomeCamera"  # Make
    img.save(tmp_path / "camera.jpg", quality=90, exif=exif)
    plain, camera = file_features(tmp_path / "plain.jpg"), file_features(tmp_path / "camera.jpg")
    assert plain["file_bytes_per_pixel"] == pytest.approx((tmp_path / "plain.jpg").stat().st_size / (30 * 50))
    assert plain["exif"] == 0.0 and camera["exif"] == 1.0


# --- the baseline -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, telling", [("size", {"width", "height", "aspect", "file_bytes_per_pixel"}),
                                           ("background", {"border_r", "border_g", "border_b",
                                                           "colourfulness", "border_std"})])
def test_planted_shortcut_is_caught(tmp_path: Path, kind: str, telling: set[str]) -> None:
    report = baseline_of(make_set(tmp_path / kind, kind))
    assert report.macro_f1 > 0.9 and report.auc > 0.9
    warning = report.warn()
    assert warning is not None and "SHORTCUT WARNING" in warning and "above 0.70" in warning
    assert report.top_features(1)[0][0] in telling, report.top_features(5)


def test_clean_set_is_not_flagged(tmp_path: Path) -> None:
    # 50 per class: with fewer, chance alone lets the best of 20 features separate ~30 images a side
    report = baseline_of(make_set(tmp_path / "clean", "clean", per_class=50))
    assert report.macro_f1 < 0.70, report.summary()
    assert report.warn() is None
    assert report.warn(cnn_macro_f1=0.95) is None  # a CNN that beats the baseline by far
    # ... but a CNN no better than photo style gets the warning
    within = report.warn(cnn_macro_f1=report.macro_f1 + 0.05)
    assert within is not None and "within 0.10 of the CNN's" in within
    table = report.ita_table()
    assert sum(sum(c.values()) for c in table.values()) == 100
    assert set(table["no skin pixels"].values()) == {0}


def test_report_contents(tmp_path: Path) -> None:
    root = make_set(tmp_path / "bg", "background", per_class=12)
    index = load_index(root)
    split = make_split(index, folds=3, seed=0)
    report = shortcut_baseline(index, split)
    assert set(report.models) == {"logreg", "forest"} and report.best in report.models
    assert sorted(report.fold_macro_f1()) == [0, 1, 2]
    assert report.macro_f1 == pytest.approx(np.mean(list(report.fold_macro_f1().values())))
    assert np.isfinite(report.oof_probs[report.best]).all()  # every image scored once, out of fold
    # every image was tested in its own fold
    assert [report.fold_of[i] for i in range(len(report.paths))] == [s.fold for s in split.samples]
    lr = report.models["logreg"]
    assert set(lr.coef_importance) == set(lr.permutation_importance)
    assert "exif" in lr.permutation_importance  # PNG files: no EXIF, 0 (known), not NaN
    rows = report.csv_rows()
    assert len(rows) == 24 and rows[0]["path"] == split.samples[0].path
    md = report.to_markdown()
    assert "| random forest" in md and "### Images per skin-tone band" in md and "SHORTCUT WARNING" in md
    d = report.to_dict({0: 1.0, 1: 0.5, 2: 0.9})
    assert d["per_fold_margin"]["1"] == pytest.approx(0.5 - report.fold_macro_f1()[1])


@pytest.mark.filterwarnings(r"ignore:class\(es\) with fewer groups")
def test_too_small_dataset_gets_a_reason(tmp_path: Path) -> None:
    root = make_set(tmp_path / "tiny", "clean", per_class=3)
    (root / "normal" / "normal_002.png").unlink()
    index = load_index(root)  # 5 images for 3 folds
    with pytest.raises(ShortcutError, match="too few readable images"):
        shortcut_baseline(index, make_split(index, folds=3, seed=0))
    report = audit(index, shortcut=True, folds=3)
    assert report.shortcut is None and "too few readable images" in (report.shortcut_error or "")
    assert "shortcut audit skipped: too few readable images" in report.summary()


def test_fitted_baseline_scores_crops_without_file_features(tmp_path: Path) -> None:
    root = make_set(tmp_path / "bg", "background", per_class=15)
    index = load_index(root)
    feats = [file_features(s.path) for s in index.samples]
    labels = index.labels().tolist()
    # crops carry no file: a model fitted on pixel features only can score them on equal terms
    fitted = fit_baseline(feats, labels, names=PIXEL_FEATURES)
    assert fitted.names == PIXEL_FEATURES
    rng = np.random.default_rng(1)
    crops, crop_labels = [], []
    for k, label in enumerate(index.class_names):
        backdrop = (40, 40, 48) if label == "lesion" else (245, 245, 245)
        for _ in range(6):
            crops.append(photo_features(photo(rng, (72, 72), backdrop, False)))
            crop_labels.append(k)
    scores = score_baseline(fitted, crops, crop_labels)
    assert scores["n"] == 12 and scores["macro_f1"] > 0.9 and scores["roc_auc"] > 0.9
    # default names: every feature known somewhere; all-NaN columns of crops are dropped
    assert "exif" not in fit_baseline(crops, crop_labels).names
    with pytest.raises(ValueError, match="unknown feature names"):
        fit_baseline(feats, labels, names=["width", "shoe_size"])
    with pytest.raises(ShortcutError, match="at least 2 classes"):
        fit_baseline(feats[:3], [0, 0, 0])


# --- CLI -----------------------------------------------------------------------------------------

def test_cli_audit_prints_baseline_and_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_set(tmp_path / "d", "size", per_class=20)
    out = tmp_path / "report"
    assert cli_main(["data", "audit", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lesion: 20" in printed and "photo-style shortcut baseline (40 images, 5 folds" in printed
    assert "logistic regression  macro-F1" in printed and "ROC-AUC" in printed and "top features" in printed
    assert "very light (>55)" in printed and "SHORTCUT WARNING" in printed
    assert "## Shortcut audit: photo style alone" in (out / "audit.md").read_text()
    with open(out / "shortcut.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40 and {"width", "ita_band", "baseline_p_lesion"} <= set(rows[0])

    assert cli_main(["data", "audit", str(root), "--out", str(tmp_path / "r2"), "--no-shortcut"]) == 0
    printed = capsys.readouterr().out
    assert "shortcut" not in printed and not (tmp_path / "r2" / "shortcut.csv").exists()


def test_cli_audit_with_split_and_cnn_score(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_set(tmp_path / "d", "clean", per_class=20)
    split_path = tmp_path / "split.json"
    assert cli_main(["data", "split", str(root), "--folds", "4", "--out", str(split_path)]) == 0
    capsys.readouterr()
    assert cli_main(["data", "audit", str(root), "--split", str(split_path), "--out", str(tmp_path / "r"),
                     "--cnn-macro-f1", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "the given split's 4 folds" in printed and "(40 images, 4 folds" in printed
    assert "at or above the CNN's 0.300" in printed  # a clean set, but a CNN no better than style
    assert cli_main(["data", "audit", str(root), "--cnn-macro-f1", "7", "--out", str(tmp_path / "r")]) == 2
    assert "--cnn-macro-f1 must be in 0..1" in capsys.readouterr().err


@pytest.mark.realdata
@pytest.mark.slow
def test_real_data_audit_warns(real_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["data", "audit", str(real_data_dir), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "photo-style shortcut baseline (311 images, 5 folds" in printed
    assert "SHORTCUT WARNING" in printed and "above 0.70" in printed


# --- cv and compare print the CNN's margin over the baseline -------------------------------------

def test_cv_summary_shows_margin_per_fold(tmp_path: Path) -> None:
    from hypoderm.engine.config import TrainConfig
    from hypoderm.engine.cv import margin_note, render_summary, style_baseline, summarize

    root = make_set(tmp_path / "d", "size", per_class=12)
    index = load_index(root)
    base, why = style_baseline(index, make_split(index, folds=3, seed=0))
    assert why is None and base is not None
    cnn = {0: 0.9, 1: 0.95, 2: 1.0}
    s = summarize({f: {"accuracy": v, "macro_f1": v, "weighted_f1": v, "roc_auc_ovr": v, "ece_before": 0.1,
                       "ece_after": 0.1} for f, v in cnn.items()})
    s["shortcut"] = base.to_dict(cnn)
    s["shortcut"]["warning"] = base.warn(s["mean"]["macro_f1"])
    md = render_summary(s, TrainConfig(data=str(root), folds=3))
    assert "| style baseline macro_f1 | margin |" in md
    b = base.fold_macro_f1()
    fold1 = next(line for line in md.splitlines() if line.startswith("| 1 |"))
    assert fold1.endswith(f"| {b[1]:.3f} | {0.95 - b[1]:+.3f} |")
    assert f"{s['mean']['macro_f1'] - base.macro_f1:+.3f} |" in md and "SHORTCUT WARNING" in md
    assert margin_note(0.8, 0.75) == ", margin +0.050 over style baseline 0.750" and margin_note(0.8, None) == ""
    # too small for a baseline: the reason, no margin columns
    small = make_set(tmp_path / "t", "clean", per_class=3)
    (small / "normal" / "normal_002.png").unlink()
    with pytest.warns(UserWarning, match="fewer groups than folds"):
        small_split = make_split(load_index(small), folds=3)
    tiny, why = style_baseline(load_index(small), small_split)
    assert tiny is None and why
    s["shortcut"] = {"error": why}
    md = render_summary(s, TrainConfig(data=str(root), folds=3))
    assert "| margin |" not in md and "Style baseline not computed: too few readable images" in md


def test_compare_table_shows_margin(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from hypoderm.study.compare import _add_style_margins, render_table

    root = make_set(tmp_path / "d", "background", per_class=12)
    index = load_index(root)
    make_split(index, folds=3, seed=0).save(tmp_path / "split.json")
    rows = [{"model": "m", "accuracy": "0.9 ± 0.1", "macro_f1": "0.90 ± 0.05", "macro_f1_mean": 0.9,
             "pooled_macro_f1": 0.88, "pooled_ci95": {"macro_f1": [0.8, 0.95]}, "params": 10, "macs": 1e6,
             "ort_ms_median": 1.0, "ort_ms_p90": 1.1, "torch_ms_median": None, "torch_ms_p90": None,
             "onnx_bytes": None}]
    note = _add_style_margins(SimpleNamespace(data=str(root), group_regex=None, allow_outside_paths=False), tmp_path,
                              rows)
    base = shortcut_baseline(index, make_split(index, folds=3, seed=0))
    assert rows[0]["style_margin_mean"] == pytest.approx(0.9 - base.macro_f1)
    assert rows[0]["style_margin_pooled"] == pytest.approx(0.88 - base.models[base.best].pooled_macro_f1)
    table = render_table(rows)
    assert "| margin over style baseline (mean / pooled) |" in table.splitlines()[0]
    assert f"| {0.9 - base.macro_f1:+.3f} / {rows[0]['style_margin_pooled']:+.3f} |" in table
    assert note.startswith("Style baseline:") and "SHORTCUT WARNING" in note


def test_feature_subset(tmp_path: Path) -> None:
    root = make_set(tmp_path / "bg", "background", per_class=16)
    index = load_index(root)
    split = make_split(index, folds=4, seed=0)
    geometry = shortcut_baseline(index, split, names=["width", "height", "aspect"])
    assert set(geometry.univariate) == {"width", "height", "aspect"}
    assert geometry.macro_f1 < 0.8  # the planted background is invisible to size features
    assert shortcut_baseline(index, split, names=["border_r"]).macro_f1 > 0.9
    with pytest.raises(ValueError, match="unknown feature names"):
        shortcut_baseline(index, split, names=["shoe_size"])


def test_three_classes(tmp_path: Path) -> None:
    # conftest's synthetic classes differ in base colour: a shortcut the skin/border colour features see
    from hypoderm_testkit.datasets import make_image_folder

    root = make_image_folder(tmp_path / "d", classes=("a", "b", "c"), per_class=10, size=40)
    report = audit(load_index(root), shortcut=True, folds=3)
    assert report.shortcut is not None and report.shortcut.class_names == ["a", "b", "c"]
    assert report.shortcut.macro_f1 > 0.9 and report.shortcut.auc > 0.9  # macro one-vs-rest
    assert report.shortcut.oof_probs[report.shortcut.best].shape == (30, 3)
    assert "SHORTCUT WARNING" in report.summary() and "ROC-AUC: pooled, macro one-vs-rest" in report.to_markdown()


def test_shortcut_audit_is_torch_free() -> None:
    import subprocess
    import sys

    code = "import sys, hypoderm.data.shortcut, hypoderm.data.audit; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_rank_auc_equals_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    from hypoderm.metrics import binary_auc

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(bool)
    scores = np.round(rng.normal(size=200) + y, 1)  # rounded: many ties
    assert binary_auc(y, scores) == pytest.approx(roc_auc_score(y, scores))
    assert math.isnan(binary_auc(np.ones(5, dtype=bool), scores[:5]))
