"""`hypoderm predict`: per-file outcomes on a mixed folder, the JSON schema, verdicts, Grad-CAM,
and the torch-free ONNX path (a subprocess in which `import torch` raises)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from helpers_export import non_skin_pictures, skin_image, tiny_checkpoint

SCHEMA = Path(__file__).resolve().parents[1] / "docs" / "predict.schema.json"


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def onnx_path(ckpt_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hypoderm.checkpoint import load_checkpoint, model_from_checkpoint
    from hypoderm.export import export_onnx, metadata_from_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    md = metadata_from_checkpoint(ckpt)
    # colour rule only: the not-skin gate is fitted for photos, and this tiny 32 px model's crude synthetic
    # "skin" squares sit on its boundary (the gate has its own tests: test_ood.py, test_nonskin.py)
    md["ood"] = {"skin_fraction_min": 0.05, "max_logit_min": -1e9, "gate": None}
    return export_onnx(model_from_checkpoint(ckpt), md, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    skin_image(1, np.random.default_rng(0), 80).save(folder / "good.png")
    non_skin_pictures()["blue_green_shapes"].save(folder / "drawing.png")
    jpeg = folder / "full.jpg"
    skin_image(0, np.random.default_rng(1), 80).save(jpeg, quality=90)
    (folder / "corrupt.jpg").write_bytes(jpeg.read_bytes()[:300])
    jpeg.unlink()
    (folder / "notes.txt").write_text("patient notes, not an image\n")
    return folder


def _run_json(args: list[str], capsys) -> tuple[int, dict]:
    from hypoderm.cli import main

    rc = main(["predict", *args, "--json"])
    return rc, json.loads(capsys.readouterr().out)


def _validate(doc: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))


def test_mixed_folder_gives_per_file_outcomes_and_valid_json(onnx_path: Path, mixed_folder: Path, capsys) -> None:
    rc, doc = _run_json([str(mixed_folder), "--model", str(onnx_path)], capsys)
    _validate(doc)
    by_name = {Path(r["file"]).name: r for r in doc["results"]}
    assert set(by_name) == {"good.png", "drawing.png", "corrupt.jpg", "notes.txt"}
    assert by_name["good.png"]["status"] in ("ok", "uncertain") and by_name["good.png"]["ood"]["is_skin"]
    assert by_name["drawing.png"]["status"] == "not_skin"
    assert by_name["corrupt.jpg"]["status"] == "error" and by_name["corrupt.jpg"]["reason"] == "truncated"
    assert by_name["notes.txt"]["status"] == "error" and by_name["notes.txt"]["reason"] == "not_image"
    assert rc == 1  # some files could not be read; the others were still processed
    probs = by_name["good.png"]["probabilities"]
    assert sum(probs.values()) == pytest.approx(1.0)
    assert [t["label"] for t in by_name["good.png"]["top_k"]] == sorted(probs, key=probs.get, reverse=True)


def test_abstain_threshold_gives_uncertain_verdict(onnx_path: Path, tmp_path: Path, capsys) -> None:
    import shutil

    img = tmp_path / "skin.png"
    skin_image(0, np.random.default_rng(3), 80).save(img)
    for threshold, expected in ((0.0, "ok"), (0.999999, "uncertain")):
        model = tmp_path / f"m{expected}" / "model.onnx"
        model.parent.mkdir()
        shutil.copy(onnx_path, model)
        md = json.loads(onnx_path.with_suffix(".json").read_text())
        model.with_suffix(".json").write_text(json.dumps({**md, "abstain_threshold": threshold}))
        rc, doc = _run_json([str(img), "--model", str(model), "--top-k", "1"], capsys)
        r = doc["results"][0]
        assert rc == 0 and r["status"] == expected and len(r["top_k"]) == 1
        if expected == "uncertain":
            assert "refer to a dermatologist" in r["message"]


@pytest.mark.slow
def test_checkpoint_model_matches_onnx_and_writes_gradcam(ckpt_path: Path, onnx_path: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    img = tmp_path / "skin.png"
    skin_image(1, np.random.default_rng(4), 80).save(img)
    rc, doc_pt = _run_json([str(img), "--model", str(ckpt_path), "--cam", str(tmp_path / "cams")], capsys)
    _validate(doc_pt)
    cam = Path(doc_pt["results"][0]["cam"])
    assert rc == 0 and cam.is_file()
    with Image.open(cam) as im:
        assert im.format == "PNG" and im.size == (32, 32)
    _, doc_onnx = _run_json([str(img), "--model", str(onnx_path)], capsys)
    p_pt, p_onnx = doc_pt["results"][0]["probabilities"], doc_onnx["results"][0]["probabilities"]
    assert max(abs(p_pt[k] - p_onnx[k]) for k in p_pt) < 1e-4


def test_cam_with_onnx_needs_the_checkpoint(onnx_path: Path, ckpt_path: Path, tmp_path: Path, capsys) -> None:
    import shutil

    img = tmp_path / "skin.png"
    skin_image(0, np.random.default_rng(5), 80).save(img)
    rc, doc = _run_json([str(img), "--model", str(onnx_path), "--cam", str(tmp_path / "c1")], capsys)
    assert rc == 0 and doc["results"][0]["cam"] is None and "needs the PyTorch checkpoint" in doc["notes"][0]
    model = tmp_path / "withckpt" / "model.onnx"
    model.parent.mkdir()
    shutil.copy(onnx_path, model)
    shutil.copy(ckpt_path, model.parent / "best.pt")
    md = json.loads(onnx_path.with_suffix(".json").read_text())
    model.with_suffix(".json").write_text(json.dumps({**md, "checkpoint": "best.pt"}))
    rc, doc = _run_json([str(img), "--model", str(model), "--cam", str(tmp_path / "c2")], capsys)
    assert rc == 0 and doc["results"][0]["cam"] and Path(doc["results"][0]["cam"]).is_file()


def test_model_errors_are_clear(tmp_path: Path, monkeypatch, capsys) -> None:
    import hypoderm.predict as predict
    from hypoderm.cli import main

    img = tmp_path / "a.png"
    skin_image(0, np.random.default_rng(0), 40).save(img)
    monkeypatch.setattr(predict, "bundled_model", lambda: tmp_path / "assets" / "model.onnx")
    assert main(["predict", str(img)]) == 2
    assert "bundled model is missing" in capsys.readouterr().err
    (tmp_path / "m.onnx").write_bytes(b"junk")
    assert main(["predict", str(img), "--model", str(tmp_path / "m.onnx")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["predict", str(img), "--model", str(img)]) == 2
    assert ".onnx file or a .pt checkpoint" in capsys.readouterr().err


BLOCK_TORCH = textwrap.dedent('''
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked in this process (hypoderm test)")
            return None

    sys.meta_path.insert(0, _NoTorch())
''')


def test_onnx_predict_runs_with_torch_blocked(onnx_path: Path, mixed_folder: Path, tmp_path: Path) -> None:
    block = tmp_path / "block"
    block.mkdir()
    (block / "sitecustomize.py").write_text(BLOCK_TORCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(block), os.environ.get("PYTHONPATH", "")])}
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "torch is blocked" in probe.stderr  # the blocker works
    proc = subprocess.run([sys.executable, "-m", "hypoderm.cli", "predict", str(mixed_folder), "--model",
                           str(onnx_path), "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # 1: two files are unreadable, by design
    doc = json.loads(proc.stdout)
    _validate(doc)
    status = {Path(r["file"]).name: r["status"] for r in doc["results"]}
    assert status["corrupt.jpg"] == status["notes.txt"] == "error" and status["drawing.png"] == "not_skin"
    assert status["good.png"] in ("ok", "uncertain")
    assert "torch" not in proc.stderr.lower()


def test_text_output_lists_every_file(onnx_path: Path, mixed_folder: Path, capsys) -> None:
    from hypoderm.cli import main

    assert main(["predict", str(mixed_folder), str(mixed_folder / "missing.png"), "--model", str(onnx_path)]) == 1
    out = capsys.readouterr().out
    assert "drawing.png: not_skin" in out and "notes.txt: ERROR" in out and "missing.png: ERROR: file not found" in out
    assert "not a medical device" in out
