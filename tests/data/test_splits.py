"""hypoderm.data.splits: group-aware, stratified, reproducible folds and the split file."""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from PIL import Image

from hypoderm.cli import main as cli_main
from hypoderm.data.dataset import DatasetError, load_index
from hypoderm.data.splits import SPLIT_FORMAT, Split, make_split
from hypoderm_testkit.datasets import make_csv_manifest, make_image_folder


def _groups_in_one_fold(split: Split) -> bool:
    folds_of_group: dict[str, set[int]] = defaultdict(set)
    for s in split.samples:
        folds_of_group[s.group].add(s.fold)
    return all(len(f) == 1 for f in folds_of_group.values())


def test_csv_groups_never_cross_folds(tmp_path: Path) -> None:
    csv_path = make_csv_manifest(tmp_path, classes=("a", "b", "c"), patients_per_class=5, images_per_patient=3)
    index = load_index(csv_path)
    split = make_split(index, folds=5, seed=0)
    assert split.group_source == "csv"
    assert {s.group for s in split.samples} == {s.group for s in index.samples}
    assert _groups_in_one_fold(split)
    assert sorted({s.fold for s in split.samples}) == [0, 1, 2, 3, 4]


def test_stratified_class_proportions(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, classes=("a", "b", "c"), per_class=10, size=32)
    index = load_index(root)
    split = make_split(index, folds=5, seed=3)
    per_fold = Counter((s.fold, s.label) for s in split.samples)
    for f in range(5):
        for c in ("a", "b", "c"):
            assert abs(per_fold[(f, c)] - 2) <= 1, (f, c, per_fold)


def test_stratified_with_imbalanced_classes(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "x", classes=("big",), per_class=40, size=32, seed=1)
    make_image_folder(tmp_path / "x", classes=("small",), per_class=10, size=32, seed=2)
    split = make_split(load_index(tmp_path / "x"), folds=5, seed=0)
    per_fold = Counter((s.fold, s.label) for s in split.samples)
    for f in range(5):
        assert abs(per_fold[(f, "big")] - 8) <= 1 and abs(per_fold[(f, "small")] - 2) <= 1, per_fold


def test_near_duplicates_share_a_group_and_fold(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, classes=("a", "b"), per_class=8, size=48)
    original = Image.open(root / "a" / "a_003.png")
    original.resize((40, 40)).save(root / "a" / "a_003_small.jpg", quality=85)  # re-encoded + resized
    original.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "a" / "a_003_mirror.png")
    split = make_split(load_index(root), folds=4, seed=0)
    assert split.group_source == "near-duplicates"
    by_path = {s.path: s for s in split.samples}
    trio = [by_path[p] for p in ("a/a_003.png", "a/a_003_small.jpg", "a/a_003_mirror.png")]
    assert len({s.group for s in trio}) == 1 and len({s.fold for s in trio}) == 1
    assert len({s.group for s in split.samples}) == 16  # the others are all distinct groups
    assert _groups_in_one_fold(split)


def test_near_threshold_decides_which_copies_are_grouped(tmp_path: Path) -> None:
    from hypoderm.data.hashing import fingerprint, near_pairs

    root = make_image_folder(tmp_path, classes=("a", "b"), per_class=6, size=48)
    Image.open(root / "a" / "a_002.png").crop((2, 2, 46, 46)).save(root / "a" / "a_002_crop.jpg", quality=70)
    index = load_index(root)
    fps = [fingerprint(root / "a" / "a_002.png"), fingerprint(root / "a" / "a_002_crop.jpg")]
    d = near_pairs(fps, threshold=64)[0][2]
    assert 0 < d <= 12  # a crop moves the hash a little, not like a different photo

    def group_of(split: Split) -> dict[str, str]:
        return {s.path: s.group for s in split.samples}

    together = group_of(make_split(index, folds=3, seed=0, near_threshold=d))
    apart = group_of(make_split(index, folds=3, seed=0, near_threshold=d - 1))
    assert together["a/a_002.png"] == together["a/a_002_crop.jpg"]
    assert apart["a/a_002.png"] != apart["a/a_002_crop.jpg"]


def test_regex_groups(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path, classes=("a", "b"), per_class=30, size=32)
    # file a_012.png -> group "a_01": 3 groups of 10 per class
    split = make_split(load_index(root), folds=3, seed=0, group_regex=r"^(\w_\d\d)")
    assert split.group_source == "regex"
    assert len({s.group for s in split.samples}) == 6
    assert _groups_in_one_fold(split)
    with pytest.raises(DatasetError, match="only 2 groups for 3 folds"):
        make_split(load_index(root), folds=3, seed=0, group_regex=r"^(\w)_")


def test_reproducible_and_seed_dependent(image_folder: Path, tmp_path: Path) -> None:
    index = load_index(image_folder)
    make_split(index, folds=4, seed=7).save(tmp_path / "s1.json")
    make_split(load_index(image_folder), folds=4, seed=7).save(tmp_path / "s2.json")
    make_split(index, folds=4, seed=8).save(tmp_path / "s3.json")
    assert (tmp_path / "s1.json").read_bytes() == (tmp_path / "s2.json").read_bytes()
    assert (tmp_path / "s1.json").read_bytes() != (tmp_path / "s3.json").read_bytes()


def test_save_load_roundtrip_and_format(image_folder: Path, tmp_path: Path) -> None:
    index = load_index(image_folder)
    split = make_split(index, folds=3, seed=0)
    split.save(tmp_path / "split.json")
    raw = json.loads((tmp_path / "split.json").read_text())
    assert raw["format"] == SPLIT_FORMAT and raw["folds"] == 3 and raw["seed"] == 0
    assert raw["group_source"] == "near-duplicates" and raw["class_names"] == ["a", "b", "c"]
    assert set(raw["samples"][0]) == {"path", "label", "group", "fold"}
    loaded = Split.load(tmp_path / "split.json")
    assert loaded == split
    loaded.check_matches(index)


def test_partition(image_folder: Path) -> None:
    split = make_split(load_index(image_folder), folds=4, seed=0)
    folds = split.fold_of()
    for f in range(4):
        train, val, test = split.partition(f)
        assert sorted(train + val + test) == list(range(len(split.samples)))
        assert set(folds[test]) == {f} and set(folds[val]) == {(f + 1) % 4}
        assert set(folds[train]) == set(range(4)) - {f, (f + 1) % 4}
    with pytest.raises(ValueError, match="fold must be in 0..3"):
        split.partition(4)


def test_check_matches_detects_changes(image_folder: Path) -> None:
    split = make_split(load_index(image_folder), folds=3, seed=0)
    (image_folder / "a" / "a_000.png").unlink()
    shutil.copy(image_folder / "b" / "b_001.png", image_folder / "b" / "new.png")
    with pytest.raises(DatasetError) as info:
        split.check_matches(load_index(image_folder))
    message = str(info.value)
    assert "in the split but not in the dataset: a/a_000.png" in message
    assert "in the dataset but not in the split: b/new.png" in message


def test_bad_arguments_and_files(image_folder: Path, tmp_path: Path) -> None:
    index = load_index(image_folder)
    with pytest.raises(ValueError, match="at least 3"):
        make_split(index, folds=1)
    with pytest.raises(DatasetError, match="only 24 groups for 30 folds"):
        make_split(index, folds=30)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not a readable JSON split file"):
        Split.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(DatasetError, match="not a hypoderm split file"):
        Split.load(tmp_path / "other.json")
    with pytest.raises(DatasetError, match="split file not found"):
        Split.load(tmp_path / "missing.json")


def test_cli_split(image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (image_folder / "b" / "broken.jpg").write_bytes(b"")
    out = tmp_path / "out" / "split.json"
    assert cli_main(["data", "split", str(image_folder), "--folds", "3", "--seed", "1", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "skipped unreadable b/broken.jpg: zero-byte file" in captured.err
    split = Split.load(out)
    assert split.folds == 3 and split.seed == 1 and len(split.samples) == 24
    assert cli_main(["data", "split", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert cli_main(["data", "split", str(image_folder), "--folds", "2", "--out", str(out)]) == 2
    assert "at least 3" in capsys.readouterr().err
