"""hypoderm.data.dataset: ImageFolder and CSV indexing, clear errors, check_images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hypoderm.data.dataset import DatasetError, check_images, load_index
from hypoderm_testkit.datasets import make_bad_files, make_image_folder


def test_image_folder_index(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", classes=("zeta", "alpha", "mid"), per_class=3)
    index = load_index(root)
    assert index.class_names == ["alpha", "mid", "zeta"]
    assert index.counts() == {"alpha": 3, "mid": 3, "zeta": 3}
    assert index.labels().tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(s.path.is_file() and s.path.parent.name == s.label for s in index.samples)
    assert index.group_source is None and all(s.group is None for s in index.samples)


def test_hidden_and_non_image_files_are_ignored(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=2)
    (root / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    shutil.copy(root / "a" / "a_000.png", root / "a" / ".hidden.png")
    (root / "a" / ".ipynb_checkpoints").mkdir()
    shutil.copy(root / "a" / "a_000.png", root / "a" / ".ipynb_checkpoints" / "x.png")
    (root / "b" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("top-level files are not classes")
    (root / ".cache").mkdir()  # hidden folder is not a class
    shutil.copy(root / "a" / "a_000.png", root / ".cache" / "y.png")
    (root / "b" / "nested").mkdir()
    shutil.copy(root / "b" / "b_000.png", root / "b" / "nested" / "deep.PNG")  # recursive, any case
    index = load_index(root)
    assert index.class_names == ["a", "b"]
    assert sorted(index.relpath(s) for s in index.samples) == [
        "a/a_000.png", "a/a_001.png", "b/b_000.png", "b/b_001.png", "b/nested/deep.PNG"]


def test_image_extension_that_is_not_an_image_is_a_bad_sample(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=3)
    expected = make_bad_files(root / "b")
    index = load_index(root)
    assert len(index) == 6 + len(expected)  # indexed by extension ...
    good, bad = check_images(index)  # ... and reported when decoded
    assert len(good) == 6 and good.class_names == index.class_names
    reasons = {s.path.name: reason for s, reason in bad}
    assert set(reasons) == set(expected)
    assert reasons["empty.jpg"] == "zero-byte file"
    assert reasons["document.jpg"] == "not an image file (PDF document)"
    assert reasons["truncated.jpg"] == "truncated image"
    assert reasons["corrupt.png"].startswith("corrupt image data")


def test_check_images_strict_lists_every_bad_file(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=2)
    expected = make_bad_files(root / "a")
    with pytest.raises(DatasetError) as info:
        check_images(load_index(root), strict=True)
    message = str(info.value)
    assert f"{len(expected)} unreadable image(s)" in message
    for name in expected:
        assert f"a/{name}:" in message


def test_check_images_clean_folder(image_folder: Path) -> None:
    index = load_index(image_folder)
    good, bad = check_images(index, strict=True)
    assert bad == [] and len(good) == len(index) == 24


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file or directory"):
        load_index(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    make_image_folder(tmp_path / "tmp", classes=("a",), per_class=2)
    for p in (tmp_path / "tmp" / "a").iterdir():
        shutil.move(p, tmp_path / "flat" / p.name)
    with pytest.raises(DatasetError, match=r"no class sub-folders \(2 images lie directly in it\)"):
        load_index(tmp_path / "flat")
    root = make_image_folder(tmp_path / "d", classes=("a", "b"), per_class=2)
    (root / "empty_class").mkdir()
    (root / "empty_class" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="class folder\\(s\\) with no images: empty_class"):
        load_index(root)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(DatasetError, match="expected an ImageFolder directory or a .csv manifest"):
        load_index(tmp_path / "x.txt")


def test_csv_manifest(csv_manifest: Path) -> None:
    index = load_index(csv_manifest)
    assert index.root == csv_manifest.parent.resolve()
    assert index.class_names == ["a", "b"] and index.counts() == {"a": 12, "b": 12}
    assert index.group_source == "csv"
    first = index.samples[0]
    assert index.relpath(first) == "images/P000_0.png"
    assert (first.label, first.group, first.skin_type, first.extra) == ("a", "P000", "FST1", {"site": "face"})
    assert len({s.group for s in index.samples}) == 12


def test_csv_without_optional_columns_and_with_bom(tmp_path: Path) -> None:
    make_image_folder(tmp_path, classes=("x", "y"), per_class=2)
    (tmp_path / "m.csv").write_text("\ufeffpath,label\ny/y_000.png,dog\nx/x_001.png,cat\nx/x_000.png,cat\n",
                                    encoding="utf-8")
    index = load_index(tmp_path / "m.csv")
    assert index.class_names == ["cat", "dog"]
    assert [index.relpath(s) for s in index.samples] == ["x/x_000.png", "x/x_001.png", "y/y_000.png"]
    assert index.group_source is None and index.samples[0].extra == {}


def test_csv_errors(tmp_path: Path) -> None:
    make_image_folder(tmp_path, classes=("x",), per_class=2)
    cases = [("file,class\nx/x_000.png,x\n", "missing column\\(s\\) path, label.*found: file,class"),
             ("path,label\nx/x_000.png,x\nx/gone1.png,x\nx/gone2.png,x\n",
              "2 listed file\\(s\\) not found: x/gone1.png, x/gone2.png"),
             ("path,label\nx/x_000.png,\nx/x_001.png,x\n", "empty path or label on line 2"),
             ("path,label\nx/x_000.png,x\nx/x_000.png,x\n", "listed twice"),
             ("path,label\n", "no rows")]
    for i, (text, message) in enumerate(cases):
        manifest = tmp_path / f"{i}.csv"
        manifest.write_text(text)
        with pytest.raises(DatasetError, match=message):
            load_index(manifest)


def test_group_regex(tmp_path: Path) -> None:
    make_image_folder(tmp_path, classes=("a", "b"), per_class=4)
    # a_002 and a_003 do not match: an error, not a silent fallback
    with pytest.raises(DatasetError, match="does not match 4 file name"):
        load_index(tmp_path, group_regex=r"^\w_00[01]\.")
    index = load_index(tmp_path, group_regex=r"^(\w)_00(\d)\.png$")  # the first capture group
    assert index.group_source == "regex"
    assert {s.label: s.group for s in index.samples} == {"a": "a", "b": "b"}
    whole = load_index(tmp_path, group_regex=r"_00[0-3]")  # no capture group: the whole match
    assert sorted({s.group for s in whole.samples}) == ["_000", "_001", "_002", "_003"]
    with pytest.raises(DatasetError, match="invalid group regex"):
        load_index(tmp_path, group_regex="(")


def test_labels_are_ints_into_class_names(image_folder: Path) -> None:
    index = load_index(image_folder)
    labels = index.labels()
    assert labels.dtype == np.int64
    assert [index.class_names[i] for i in labels] == [s.label for s in index.samples]
