"""Fold preparation (`hypoderm.engine.fold`): one home for split reuse, matching and leakage rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hypoderm.engine
from hypoderm.data.dataset import DatasetError
from hypoderm.engine.cache import DecodedCache
from hypoderm.engine.config import TrainError
from hypoderm.engine.fold import load_or_make_split, readable_index
from hypoderm.inference.preprocess import PreprocessSpec


def test_split_is_made_once_then_reused(image_folder: Path, tmp_path: Path) -> None:
    cache = DecodedCache(PreprocessSpec.for_size(32))
    index, bad = readable_index(str(image_folder), None, False, cache)
    path = tmp_path / "split.json"
    made = load_or_make_split(index, path, make_if_missing=True, folds=3, seed=0, group_regex=None, unreadable=bad)
    assert path.is_file()
    # the same settings (a resumed run, a later fold): the saved split, not a new draw
    again = load_or_make_split(index, path, make_if_missing=True, folds=3, seed=0, group_regex=None)
    assert again.to_dict() == made.to_dict()
    # given as the split to use (--split): used as it is, whatever the seed asked for
    given = load_or_make_split(index, path, make_if_missing=False, folds=5, seed=7, group_regex=None)
    assert given.to_dict() == made.to_dict()
    # found in the run's folder but drawn with other settings (left by a failed run): refused, not reused
    with pytest.raises(TrainError, match="is 3 folds drawn with seed 0, but this run asks for 3 folds with seed 7"):
        load_or_make_split(index, path, make_if_missing=True, folds=3, seed=7, group_regex=None)
    assert path.read_text() and load_or_make_split(index, path, make_if_missing=True, folds=3, seed=0,
                                                   group_regex=None).to_dict() == made.to_dict()


def test_missing_given_split_is_an_error(image_folder: Path, tmp_path: Path) -> None:
    index, _ = readable_index(str(image_folder), None, False, DecodedCache(PreprocessSpec.for_size(32)))
    with pytest.raises(DatasetError, match="split file not found"):
        load_or_make_split(index, tmp_path / "nope.json", make_if_missing=False, folds=3, seed=0, group_regex=None)


def test_mismatch_names_the_unreadable_images(image_folder: Path, tmp_path: Path) -> None:
    cache = DecodedCache(PreprocessSpec.for_size(32))
    index, _ = readable_index(str(image_folder), None, False, cache)
    path = tmp_path / "split.json"
    load_or_make_split(index, path, make_if_missing=True, folds=3, seed=0, group_regex=None)
    broken = sorted((image_folder / "a").iterdir())[0]
    broken.write_bytes(b"")  # now unreadable: the split lists a file the readable index lacks
    index2, bad = readable_index(str(image_folder), None, False, DecodedCache(cache.spec))
    assert bad
    with pytest.raises(DatasetError, match=r"unreadable image\(s\) were left out.*" + broken.name):
        load_or_make_split(index2, path, make_if_missing=True, folds=3, seed=0, group_regex=None, unreadable=bad)


def _imports_from_train(module_file: Path) -> set[str]:
    """Names a module imports from hypoderm.engine.train, at any depth (lazy imports included)."""
    tree = ast.parse(module_file.read_text())
    return {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "hypoderm.engine.train"
            for a in n.names}


def test_evaluate_and_cv_do_not_reach_into_the_training_loop() -> None:
    engine = Path(hypoderm.engine.__file__).parent
    assert _imports_from_train(engine / "evaluate.py") == set()
    assert _imports_from_train(engine / "fold.py") == set()
    assert _imports_from_train(engine / "cv.py") == {"train"}  # cv trains each fold; nothing else
