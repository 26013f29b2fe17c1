"""hypoderm.data.audit: finds planted duplicates, label conflicts, unreadable files and leaks."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import pytest
from PIL import Image

from hypoderm.cli import main as cli_main
from hypoderm.data.audit import audit, find_leaks
from hypoderm.data.dataset import load_index
from hypoderm.data.splits import Split, make_split
from hypoderm_testkit.datasets import make_image_folder


def _pairs(report, kind: str) -> set[frozenset[str]]:  # noqa: ANN001 - test helper
    return {frozenset((f.path_a, f.path_b)) for f in report.of_kind(kind)}


def test_clean_folder_has_no_findings(image_folder: Path) -> None:
    report = audit(load_index(image_folder))
    assert report.findings == []
    assert report.class_counts == {"a": 8, "b": 8, "c": 8}
    assert report.sizes["width"] == (48.0, 48.0, 48.0)


def test_planted_problems_are_found(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, classes=("a", "b"), per_class=6, size=48)
    shutil.copy(root / "a" / "a_001.png", root / "a" / "copy_of_a_001.png")              # exact, same class
    Image.open(root / "a" / "a_002.png").transpose(Image.Transpose.ROTATE_90).save(root / "a" / "rot.png")  # near
    src = Image.open(root / "a" / "a_004.png")
    src.resize((40, 40)).save(root / "b" / "relabelled.jpg", quality=80)               # near, other class
    (root / "b" / "zero.jpg").write_bytes(b"")                                          # unreadable
    report = audit(load_index(root))
    assert _pairs(report, "exact_duplicate") == {frozenset(("a/a_001.png", "a/copy_of_a_001.png"))}
    assert _pairs(report, "near_duplicate") == {frozenset(("a/a_002.png", "a/rot.png"))}
    assert _pairs(report, "label_conflict") == {frozenset(("a/a_004.png", "b/relabelled.jpg"))}
    conflict = report.of_kind("label_conflict")[0]
    assert {conflict.label_a, conflict.label_b} == {"a", "b"} and 0 <= conflict.distance <= 4
    assert conflict.detail.startswith("near-identical images")
    assert [(f.path_a, f.detail) for f in report.unreadable] == [("b/zero.jpg", "zero-byte file")]
    assert report.leaks == []  # no split given


def test_threshold_controls_near_duplicates(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, classes=("a", "b"), per_class=4)
    Image.open(root / "a" / "a_000.png").crop((3, 3, 45, 45)).save(root / "b" / "cropped.jpg", quality=60)
    index = load_index(root)
    wanted = frozenset(("a/a_000.png", "b/cropped.jpg"))
    found = [f for f in audit(index, near_threshold=12).of_kind("label_conflict")
             if frozenset((f.path_a, f.path_b)) == wanted]
    assert len(found) == 1 and found[0].distance is not None and found[0].distance > 0
    distance = found[0].distance
    assert wanted in _pairs(audit(index, near_threshold=distance), "label_conflict")
    assert wanted not in _pairs(audit(index, near_threshold=distance - 1), "label_conflict")


def test_planted_leak_across_folds(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, classes=("a", "b"), per_class=8, size=48)
    Image.open(root / "b" / "b_005.png").resize((44, 44)).save(root / "b" / "b_005_again.jpg", quality=85)
    index = load_index(root)
    good = make_split(index, folds=4, seed=0)
    assert audit(index, split=good).leaks == []  # near-duplicate groups keep the pair together
    assert find_leaks(index, good) == []

    # A split made without looking at duplicates: move the copy to another fold.
    fold_of = {s.path: s.fold for s in good.samples}
    other = (fold_of["b/b_005.png"] + 1) % 4
    leaky = dataclasses.replace(good, samples=[
        dataclasses.replace(s, fold=other) if s.path == "b/b_005_again.jpg" else s for s in good.samples])
    leaky.save(tmp_path / "leaky.json")
    leaky = Split.load(tmp_path / "leaky.json")
    report = audit(index, split=leaky)
    assert _pairs(report, "leak") == {frozenset(("b/b_005.png", "b/b_005_again.jpg"))}
    leak = report.leaks[0]
    assert {leak.fold_a, leak.fold_b} == {fold_of["b/b_005.png"], other}
    assert find_leaks(index, leaky) == report.leaks
    assert str(leak) == (f"leak: b/b_005.png [b, fold {leak.fold_a}] ~ b/b_005_again.jpg [b, fold {leak.fold_b}]: "
                         f"near-identical images (phash distance {leak.distance})")


def test_cli_writes_markdown_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=5)
    shutil.copy(root / "a" / "a_000.png", root / "b" / "same_bytes.png")  # exact, across classes
    (root / "a" / "fake.jpg").write_text("<html><body>login</body></html>")
    split_path = tmp_path / "split.json"
    assert cli_main(["data", "split", str(root), "--folds", "3", "--out", str(split_path)]) == 0
    out = tmp_path / "report"
    assert cli_main(["data", "audit", str(root), "--split", str(split_path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "label conflict: 1" in printed and "unreadable: 1" in printed and "leak: 0" in printed
    # the split skipped fake.jpg, so the audit says the split and the folder differ
    assert "in the dataset but not in the split: a/fake.jpg" in printed
    with open(out / "audit.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["kind"] for r in rows) == ["label_conflict", "unreadable"]
    unreadable = next(r for r in rows if r["kind"] == "unreadable")
    assert unreadable["path_a"] == "a/fake.jpg" and unreadable["detail"] == "not an image file (HTML page)"
    conflict = next(r for r in rows if r["kind"] == "label_conflict")
    assert conflict["distance"] == "0" and conflict["detail"] == "byte-identical files"
    md = (out / "audit.md").read_text()
    assert "| a | 6 |" in md and "| b | 6 |" in md and "a/fake.jpg" in md and "same_bytes.png" in md


def test_cli_bad_split_file(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s.json").write_text("[]")
    assert cli_main(["data", "audit", str(image_folder), "--split", str(tmp_path / "s.json"),
                     "--out", str(tmp_path / "o")]) == 2
    assert "not a hypoderm split file" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_data_audit(real_data_dir: Path) -> None:
    report = audit(load_index(real_data_dir))
    assert report.class_counts == {"normal_skin": 97, "vitiligo": 214}
    assert report.unreadable == []
    # MANIFEST.md: exact and near-duplicates (same criterion) were removed when the folder was built
    assert report.of_kind("exact_duplicate") == [] and report.of_kind("label_conflict") == []
