"""Issue 28, finding 3: a gate block that passes the field checks but cannot score (a scale of 1e-300 makes every
score NaN), a gate size that costs ~1 GB per prediction, and a damaged shipped gate file
(src/hypoderm/assets/nonskin_gate.json) are each refused when the model loads: `predict` and `serve` exit 2 with a
message naming the file (the model's sidecar, or the shipped gate file), never a traceback or exit 3."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hypoderm.imaging import colour
from hypoderm.inference import ood
from hypoderm.inference.ood import (
    MAX_GATE_SIZE,
    GateFileError,
    GateParameterError,
    default_gate,
    gate_features,
    gate_score,
    probe_crops,
    validate_gate,
)

TINY_SCALE = {"scale": [1e-300] * 17}


def test_a_tiny_scale_passes_the_field_checks_but_scores_nan() -> None:
    """Why the probe exists: every number is finite and positive, and the score is still NaN."""
    gate = {**default_gate(), **TINY_SCALE}
    crop = probe_crops(gate["size"])["skin-coloured"]
    assert math.isnan(gate_score(gate_features(crop, gate), gate))
    with pytest.raises(GateParameterError, match="non-finite score"):
        validate_gate(gate)


def test_probe_crops_are_fixed_and_the_shipped_gate_scores_them() -> None:
    a, b = probe_crops(64), probe_crops(64)
    assert set(a) == {"mid-grey", "skin-coloured", "random noise", "black and white halves"}
    assert all(np.array_equal(a[k], b[k]) and a[k].shape == (64, 64, 3) for k in a)
    gate = default_gate()
    assert all(math.isfinite(gate_score(gate_features(c, gate), gate)) for c in probe_crops(gate["size"]).values())


@pytest.mark.parametrize("size", [MAX_GATE_SIZE + 16, 2048])
def test_gate_size_is_bounded(size: int) -> None:
    with pytest.raises(GateParameterError, match=f"size must be an integer in 32..{MAX_GATE_SIZE}"):
        validate_gate({**default_gate(), "size": size})


def _edited_model(model_dir: Path, tmp_path: Path, gate_edit: dict) -> Path:
    out = tmp_path / "edited"
    out.mkdir()
    (out / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    md = json.loads((model_dir / "model.json").read_text())
    md["ood"]["gate"] = {**default_gate(), **gate_edit}
    (out / "model.json").write_text(json.dumps(md))
    return out


def _photo(tmp_path: Path) -> Path:
    from hypoderm_testkit.app import skin_png

    photo = tmp_path / "p.png"
    photo.write_bytes(skin_png())
    return photo


@pytest.mark.parametrize("edit, message", [(TINY_SCALE, "non-finite score"),
                                           ({"size": 2048}, "ood.gate.size must be an integer")])
def test_bad_gate_in_a_sidecar_is_exit_2_naming_the_sidecar(model_dir: Path, tmp_path: Path, edit: dict,
                                                            message: str, capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    bad = _edited_model(model_dir, tmp_path, edit)
    for json_flag in ([], ["--json"]):
        assert main(["predict", str(_photo(tmp_path)), "--model", str(bad / "model.onnx"), *json_flag]) == 2
        out = capsys.readouterr()
        assert out.out == "" and message in out.err and str(bad / "model.json") in out.err
        assert "Traceback" not in out.err
    assert main(["serve", "--model", str(bad), "--port", "1"]) == 2  # refused before it listens
    err = capsys.readouterr().err
    assert message in err and str(bad / "model.json") in err and "Traceback" not in err


@pytest.fixture
def shipped_gate_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Point the shipped gate file at a temporary copy the test may damage; the caches are emptied before and
    after, so the real file is read again by the next test."""
    path = tmp_path / "nonskin_gate.json"
    path.write_text(json.dumps(default_gate()))
    _clear_caches()
    monkeypatch.setattr(colour, "GATE_FILE", path)
    yield path
    monkeypatch.undo()
    _clear_caches()


def _clear_caches() -> None:
    """The shipped gate is read once per process; a test that damages it reads it again."""
    for fn in (colour.shipped_gate_file, colour.shipped_skin_rule, ood.default_gate):
        fn.cache_clear()


BROKEN_GATE_FILES = {
    "missing": None,
    "not JSON": "{\"format\": \"hypoderm-gate/2\", ",
    "not UTF-8": b"\xff\xfe\x00{",
    "a list": "[1, 2, 3]",
    "bad field": {"threshold": "high"},
    "tiny scale": TINY_SCALE,
    "huge size": {"size": 2048},
    "bad skin rule": {"skin_rule": {"cr": "wide"}},
    "bad skin floor": {"skin_fraction_min": 7},
}


def _damage(path: Path, how: object) -> None:
    if how is None:
        path.unlink()
    elif isinstance(how, bytes):
        path.write_bytes(how)
    elif isinstance(how, str):
        path.write_text(how)
    else:
        path.write_text(json.dumps({**json.loads(path.read_text()), **how}))


@pytest.mark.parametrize("case", list(BROKEN_GATE_FILES))
def test_damaged_shipped_gate_file_is_exit_2_naming_it(case: str, shipped_gate_file: Path, model_dir: Path,
                                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    _damage(shipped_gate_file, BROKEN_GATE_FILES[case])
    with pytest.raises(GateFileError, match="nonskin_gate.json"):
        default_gate()
    for json_flag in ([], ["--json"]):
        rc = main(["predict", str(_photo(tmp_path)), "--model", str(model_dir / "model.onnx"), *json_flag])
        out = capsys.readouterr()
        assert rc == 2, out.err
        assert out.out == "" and str(shipped_gate_file) in out.err and "Traceback" not in out.err
        assert "model.json" not in out.err  # the model's sidecar is not to blame
    assert main(["serve", "--model", str(model_dir), "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert str(shipped_gate_file) in err and "Traceback" not in err


def test_damaged_gate_file_is_refused_even_for_a_model_with_its_own_gate(shipped_gate_file: Path, model_dir: Path,
                                                                         tmp_path: Path) -> None:
    """The skin rule and the defaults come from that file too: a damaged installation is said at load."""
    from hypoderm.inference import OnnxPredictor

    good = _edited_model(model_dir, tmp_path, {})
    assert json.loads((good / "model.json").read_text())["ood"]["gate"]
    shipped_gate_file.write_text("garbage")
    _clear_caches()
    with pytest.raises(GateFileError, match="cannot be read as JSON"):
        OnnxPredictor(good / "model.onnx")


def test_the_copied_gate_file_loads_like_the_shipped_one(shipped_gate_file: Path) -> None:
    """The fixture itself: an undamaged copy gives the same gate (so the refusals above come from the damage)."""
    assert default_gate() == json.loads(shipped_gate_file.read_text())
    assert colour.shipped_skin_rule() == colour.CHAI_NGAN_RULE
