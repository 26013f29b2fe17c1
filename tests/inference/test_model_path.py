"""Issue 30: one resolver for `--model` (hypoderm.inference.model_path), used by `predict` and `serve`: a file, a
folder holding model.onnx, the bundled model; one wording for each way the choice is wrong (ModelLoadError)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypoderm.errors import HypodermError
from hypoderm.inference import ModelLoadError, bundled_model, model_path
from hypoderm.inference.model_path import CHECKPOINT, ONNX, resolve_model_path


def test_a_file_a_folder_and_the_bundled_model(tmp_path: Path) -> None:
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not checked here")
    assert resolve_model_path(onnx) == onnx
    assert resolve_model_path(str(tmp_path)) == onnx  # the folder `hypoderm export` wrote
    assert resolve_model_path(None) == bundled_model() and bundled_model().is_file()
    pt = tmp_path / "best.PT"
    pt.write_bytes(b"")
    assert resolve_model_path(pt, ONNX + CHECKPOINT) == pt  # predict also runs a checkpoint


def test_each_mistake_has_its_own_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelLoadError, match=r"^model not found: .*nothing\.onnx \(expected a model\.onnx made by"):
        resolve_model_path(tmp_path / "nothing.onnx")
    with pytest.raises(ModelLoadError, match=r"holds no model\.onnx"):
        resolve_model_path(tmp_path)  # a folder without the model
    (tmp_path / "best.pt").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"best\.pt is not a \.onnx file .*exported first with `hypoderm export`"):
        resolve_model_path(tmp_path / "best.pt")  # serve runs .onnx only
    (tmp_path / "photo.jpg").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"photo\.jpg is not a \.onnx, \.pt or \.pth file .*or a \.pt checkpoint"):
        resolve_model_path(tmp_path / "photo.jpg", ONNX + CHECKPOINT)
    monkeypatch.setattr(model_path, "bundled_model", lambda: tmp_path / "assets" / "model.onnx")
    with pytest.raises(ModelLoadError, match=r"^no --model given and the bundled model is missing") as e:
        resolve_model_path(None)
    assert isinstance(e.value, HypodermError) and e.value.exit_code == 2


def test_an_empty_or_garbage_onnx_file_says_what_it_is(tmp_path: Path) -> None:
    """A 0-byte model.onnx was called a model "with no hypoderm metadata" (onnx parses nothing as an empty model),
    which sends a user to re-export rather than to the failed copy; garbage says it is not a readable model."""
    from hypoderm.inference.metadata import load_metadata

    empty, junk = tmp_path / "empty.onnx", tmp_path / "junk.onnx"
    empty.write_bytes(b"")
    junk.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match=r"empty\.onnx is an empty file \(0 bytes\), not an ONNX model"):
        load_metadata(empty)
    with pytest.raises(ModelLoadError, match=r"junk\.onnx is not a readable ONNX model"):
        load_metadata(junk)
