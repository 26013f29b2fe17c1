"""Issue 28, finding 1: the one image loader opens only the raster formats it names (imaging.io.IMAGE_FORMATS).
An EPS, PostScript or PDF body, whatever its name and content type, is refused with a clear message by every entry
point (upload multipart and raw, `predict`, training's check_images, the SCIN import's check), and nothing is
executed or written: Pillow's EPS plugin would write the body to a temporary file and run Ghostscript on it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import EpsImagePlugin, Image

from hypoderm.app.server import create_app
from hypoderm.data.dataset import DatasetIndex, Sample, check_images
from hypoderm.imaging.io import IMAGE_FORMATS, ImageLoadError, load_rgb, load_rgb_bytes

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\n"
       b"0.8 0.6 0.5 setrgbcolor 0 0 64 64 rectfill\nshowpage\n%%EOF\n")
POSTSCRIPT = b"%!PS-Adobe-3.0\n%%Pages: 1\n%%EndComments\n/Times-Roman findfont 12 scalefont setfont\nshowpage\n"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
# An EPS with a DOS binary header (magic C5D0D3C6), as Illustrator saves it.
EPS_BINARY = b"\xc5\xd0\xd3\xc6" + (32).to_bytes(4, "little") + len(EPS).to_bytes(4, "little") + bytes(20) + EPS
BODIES = {"eps": EPS, "postscript": POSTSCRIPT, "pdf": PDF, "eps_binary": EPS_BINARY}
KINDS = {"eps": "EPS/PostScript", "postscript": "EPS/PostScript", "pdf": "PDF document", "eps_binary": "EPS/PostScript"}


@pytest.fixture
def no_delegates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Make Ghostscript look installed, record every program Pillow (or anyone) would start and every file put in
    the temporary folder: the test then fails the moment the EPS plugin gets to run."""
    calls: list[object] = []

    def record(name: str):
        def fake(*args, **kwargs):
            calls.append((name, args))
            raise OSError("a delegate program was started")
        return fake

    for name in ("Popen", "check_call", "call", "run", "check_output"):
        monkeypatch.setattr(subprocess, name, record(name))
    monkeypatch.setattr(shutil, "which", lambda *a, **k: calls.append(("which", a)) or "/usr/bin/gs")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", "/usr/bin/gs")
    monkeypatch.setattr(EpsImagePlugin, "has_ghostscript", lambda: True)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield calls
    assert calls == [], f"programs started: {calls}"
    assert sorted(os.listdir(tmp)) == [], "files written to the temporary folder"


def test_allow_list_names_only_raster_formats_we_read() -> None:
    assert {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"} <= set(IMAGE_FORMATS)
    assert not {"EPS", "PDF", "PS", "MPEG", "WMF", "ICO", "PSD"} & set(IMAGE_FORMATS)
    Image.init()
    assert set(IMAGE_FORMATS) <= set(Image.OPEN)  # each one registered (an unknown name would be a KeyError)


def test_eps_plugin_would_run_ghostscript_without_the_allow_list(no_delegates: list) -> None:
    """The fixture really catches a delegate: Pillow left to choose the plugin itself starts Ghostscript."""
    with pytest.raises(OSError, match="delegate"), Image.open(__import__("io").BytesIO(EPS)) as im:
        im.load()
    assert [name for name, _ in no_delegates] == ["check_call"]
    no_delegates.clear()


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_loader_refuses_documents_and_runs_nothing(kind: str, no_delegates: list, tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError) as e:
        load_rgb_bytes(BODIES[kind])
    assert e.value.reason == "not_image" and KINDS[kind] in str(e.value)
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(BODIES[kind])
    with pytest.raises(ImageLoadError, match="not an image file"):
        load_rgb(photo, min_size=64)


def test_eps_message_says_what_to_do(no_delegates: list) -> None:
    with pytest.raises(ImageLoadError) as e:
        load_rgb_bytes(EPS)
    assert str(e.value) == ("not an image file (EPS/PostScript: not a format this app reads; save the photo as "
                            "JPEG or PNG)")


@pytest.fixture(scope="module")
def client(model_dir: Path) -> TestClient:
    return TestClient(create_app(model_dir), raise_server_exceptions=False)


@pytest.mark.parametrize("kind", sorted(BODIES))
def test_upload_as_photo_jpg_is_a_415_multipart_and_raw(kind: str, client: TestClient, no_delegates: list) -> None:
    body = BODIES[kind]
    answers = [client.post("/api/v1/predict", files={"image": ("photo.jpg", body, "image/jpeg")}),
               client.post("/api/v1/predict", content=body, headers={"Content-Type": "image/jpeg"})]
    for r in answers:
        assert r.status_code == 415, r.text
        assert r.json()["error"] == "not_an_image" and KINDS[kind] in r.json()["detail"]


def test_predict_reports_the_eps_file_and_runs_nothing(model_dir: Path, tmp_path: Path, no_delegates: list,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(EPS)
    rc = main(["predict", str(folder / "photo.jpg"), "--model", str(model_dir / "model.onnx")])
    out = capsys.readouterr()
    assert rc == 1
    text = out.out + out.err
    assert "photo.jpg" in text and "EPS/PostScript" in text and "Traceback" not in text
    assert "Ghostscript" not in text and "-sOutputFile" not in text


def test_training_and_scin_checks_use_the_same_loader(tmp_path: Path, no_delegates: list) -> None:
    from hypoderm.data.scin.fetch import _check_image_bytes

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "photo.jpg").write_bytes(EPS)
    index = DatasetIndex(tmp_path, [Sample(tmp_path / "a" / "photo.jpg", "a")], ["a"])
    good, bad = check_images(index)
    assert good.samples == [] and "EPS/PostScript" in bad[0][1]
    with pytest.raises(ValueError, match="EPS/PostScript"):
        _check_image_bytes(EPS)
