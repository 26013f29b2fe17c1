"""Issue 28, finding 5: folder walks are iterative (a folder nested 1,100 levels deep crashed `predict` with a
RecursionError, exit 3) and a sub-folder that cannot be listed is reported like an unreadable file (named,
counted, exit 1), never skipped without a word. Tests run as root, so `chmod 000` is simulated by making
os.scandir raise PermissionError for one folder."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from hypoderm.data.dataset import DatasetError, load_index
from hypoderm.imaging.files import walk_folder
from hypoderm_testkit.app import skin_png

DEPTH = 1100
_SCANDIR = os.scandir  # the real one, for the clean-up while a test's `locked` is in force
_DEEP: list[Path] = []


def _deep(root: Path, depth: int = DEPTH) -> Path:
    """root/d/d/.../d (depth levels), built one level at a time (a path of ~2,200 characters); removed after the
    test (pytest's own clean-up, shutil.rmtree, recurses and would fail on it)."""
    folder = root / "d"
    _DEEP.append(folder)
    for _ in range(depth):
        folder.mkdir()
        folder = folder / "d"
    return folder.parent


@pytest.fixture(autouse=True)
def _remove_deep_folders():
    yield
    while _DEEP:
        top = _DEEP.pop()
        folders, stack = [], [top]
        while stack:
            folder = stack.pop()
            folders.append(folder)
            with _SCANDIR(folder) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    else:
                        os.unlink(entry.path)
        for folder in reversed(folders):
            os.rmdir(folder)


@pytest.fixture
def locked(monkeypatch: pytest.MonkeyPatch):
    """`lock(folder)`: os.scandir on that folder raises PermissionError, as for a chmod 000 folder of another
    user; every other folder lists as usual."""
    real = os.scandir
    blocked: set[str] = set()

    def scandir(path: str | os.PathLike[str] = ".") -> object:
        if os.path.abspath(os.fspath(path)) in blocked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return lambda folder: blocked.add(os.path.abspath(folder))


def test_walk_is_iterative_sorted_and_skips_hidden_entries(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    bottom = _deep(tmp_path / "root")
    (bottom / "deep.png").write_bytes(b"x")
    (tmp_path / "root" / "b.png").write_bytes(b"x")
    (tmp_path / "root" / "a.png").write_bytes(b"x")
    (tmp_path / "root" / ".hidden.png").write_bytes(b"x")
    (tmp_path / "root" / ".cache").mkdir()
    (tmp_path / "root" / ".cache" / "c.png").write_bytes(b"x")
    (tmp_path / "root" / "link").symlink_to(tmp_path / "root" / "d")
    limit = sys.getrecursionlimit()
    entries, unlisted = walk_folder(tmp_path / "root")
    assert sys.getrecursionlimit() == limit and unlisted == []
    names = [p.relative_to(tmp_path / "root").as_posix() for p in entries]
    assert names == sorted(names) and set(names) == {"a.png", "b.png", "link", "/".join(["d"] * DEPTH) + "/deep.png"}


def test_walk_names_a_folder_it_cannot_list(tmp_path: Path, locked) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.png").write_bytes(b"x")
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "b.png").write_bytes(b"x")
    locked(tmp_path / "locked")
    entries, unlisted = walk_folder(tmp_path)
    assert entries == [tmp_path / "ok" / "a.png"]
    assert unlisted == [(tmp_path / "locked", "cannot list this folder (permission denied); the photos in it were "
                                              "not read")]


def test_predict_on_a_folder_1100_levels_deep(model_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    (tmp_path / "photos").mkdir()
    bottom = _deep(tmp_path / "photos")
    (bottom / "deep.png").write_bytes(skin_png())
    (tmp_path / "photos" / "top.png").write_bytes(skin_png(seed=1))
    rc = main(["predict", str(tmp_path / "photos"), "--model", str(model_dir / "model.onnx"), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err[-2000:]
    doc = json.loads(out.out)
    assert sorted(Path(r["file"]).name for r in doc["results"]) == ["deep.png", "top.png"]
    assert all(r["status"] != "error" for r in doc["results"]) and "RecursionError" not in out.err


def test_predict_reports_a_folder_it_cannot_list(model_dir: Path, tmp_path: Path, locked,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    photos = tmp_path / "photos"
    (photos / "locked").mkdir(parents=True)
    (photos / "good.png").write_bytes(skin_png())
    (photos / "locked" / "hidden_from_us.png").write_bytes(skin_png(seed=2))
    locked(photos / "locked")
    rc = main(["predict", str(photos), "--model", str(model_dir / "model.onnx"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1  # as for a failed file
    errors = [r for r in doc["results"] if r["status"] == "error"]
    assert errors == [{"file": str(photos / "locked"), "status": "error", "reason": "unreadable",
                       "error": "cannot list this folder (permission denied); the photos in it were not read"}]
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs" / "predict.schema.json").read_text())
    jsonschema.validate(doc, schema)
    rc = main(["predict", str(photos), "--model", str(model_dir / "model.onnx")])
    text = capsys.readouterr().out
    assert rc == 1 and f"{photos / 'locked'}: ERROR: cannot list this folder (permission denied)" in text
    assert "1 of 2 files not predicted: 1 unreadable." in text


def test_image_folder_index_walks_deep_folders_and_refuses_unlistable_ones(tmp_path: Path, locked) -> None:
    root = tmp_path / "data"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / f"{c}.png").write_bytes(skin_png())
    (_deep(root / "a") / "deep.png").write_bytes(skin_png(seed=3))
    index = load_index(root)
    assert len(index) == 3 and any(s.path.name == "deep.png" and s.label == "a" for s in index.samples)
    (root / "b" / "locked").mkdir()
    locked(root / "b" / "locked")
    with pytest.raises(DatasetError, match=r"1 folder\(s\) cannot be listed: b/locked: cannot list this folder "
                                           r"\(permission denied\)"):
        load_index(root)


def test_export_calibration_folder_walk_is_iterative(tmp_path: Path, locked) -> None:
    from hypoderm.export.bundle import list_images

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"x")
    (_deep(tmp_path / "a") / "y.png").write_bytes(b"x")
    files, labels = list_images(tmp_path, ["a", "b"])
    assert [f.name for f in files] == ["y.png", "x.png"]  # sorted by path: a/d/... before a/x.png
    assert labels == [0, 0]
    locked(tmp_path / "a" / "d")
    with pytest.raises(ValueError, match="cannot list this folder"):
        list_images(tmp_path, ["a", "b"])
