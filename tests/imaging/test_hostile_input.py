"""Issue 23: hostile input, round two. One regression test (or more) per item:

1. Grad-CAM is drawn on a picture of at most OVERLAY_MAX_SIDE pixels, never at the photo's size.
2. every format decodes to a bounded working size, and exotic modes convert in bounded memory.
3. stalled uploads do not count against the prediction limit; uploads are bounded per client and in
   total; /health reports saturation.
4. model sidecars are validated field by field and against the ONNX graph; output is always JSON.
5. a model with fewer than two classes is refused.
6. `predict` sniffs a file's header and size before reading it.
7. odd folder entries (broken or looping symlinks, FIFOs) are reported, never opened.
9. the HEIC/AVIF message tells the truth.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hypoderm.app.server import Limits, create_app
from hypoderm.imaging import io as dio
from hypoderm.imaging.io import SOURCE_SIZE_KEY, ImageLoadError, load_rgb_bytes
from hypoderm.inference.explain import OVERLAY_MAX_SIDE
from hypoderm.inference.ood import DEFAULT_GATE
from hypoderm_testkit.app import build_model_dir, confident, phone_like_jpeg

ROOT = Path(__file__).resolve().parents[2]
NO_GATE = {"ood": {"skin_fraction_min": 0.05, "max_logit_min": -1e9, "gate": None}}  # colour rule only


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _big_skin(width: int, height: int, seed: int = 0) -> Image.Image:
    """A large skin-toned picture that compresses well: a small textured one blown up (nearest)."""
    small = Image.open(io.BytesIO(phone_like_jpeg(max(8, width // 8), max(8, height // 8), seed))).convert("RGB")
    return small.resize((width, height), Image.Resampling.NEAREST)


@pytest.fixture(scope="module")
def cam_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model exported with the Grad-CAM outputs; the not-skin check is the colour rule only; a preference
    for one class (testkit: app.confident) keeps its answers above the chance floor, so a skin photo gets one."""
    import torch

    from hypoderm.models import create_model

    torch.manual_seed(0)
    return build_model_dir(tmp_path_factory.mktemp("cam_model"), size=64, classes=["normal_skin", "vitiligo"],
                           model=confident(create_model("mnv3s", num_classes=2)), model_name="mnv3s",
                           extra=NO_GATE)


# ---- 1. Grad-CAM at a bounded size -----------------------------------------------------------------------

def test_overlay_of_a_large_photo_is_at_most_the_display_size(cam_model_dir: Path) -> None:
    from hypoderm.inference import OnnxPredictor
    from hypoderm.inference.explain import crop_box, overlay_on_photo

    predictor = OnnxPredictor(cam_model_dir / "model.onnx", threads=1)
    img = _big_skin(3000, 2000)
    features, weights = predictor.gradcam_outputs(img)
    out = overlay_on_photo(img, features, weights, 1, predictor.spec)
    assert out.size == (OVERLAY_MAX_SIDE, round(2000 * OVERLAY_MAX_SIDE / 3000))
    # the heat covers the square the model saw, scaled with the photo; the rest is the photo dimmed
    left, top, w, h = (v * OVERLAY_MAX_SIDE / 3000 for v in crop_box(3000, 2000, predictor.spec))
    small = np.asarray(img.resize(out.size, Image.Resampling.BILINEAR, reducing_gap=2.0), float)
    drawn = np.asarray(out, float)
    edge = int(left) - 1
    assert np.allclose(drawn[:, :edge], np.round(small[:, :edge] * 0.45), atol=1)
    rows, cols = slice(int(top) + 2, int(top + h) - 2), slice(int(left) + 2, int(left + w) - 2)
    assert not np.allclose(drawn[rows, cols], np.round(small[rows, cols] * 0.45), atol=1)
    assert overlay_on_photo(img.crop((0, 0, 300, 200)), features, weights, 1, predictor.spec).size == (300, 200)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_server_gradcam_of_a_large_photo_is_small(cam_model_dir: Path, fmt: str) -> None:
    """The issue: a 40 MP PNG with gradcam=true took the server to 3 GB, its heat map at 40 MP."""
    client = TestClient(create_app(cam_model_dir, limits=Limits(max_upload_bytes=8 << 20)))
    data = _encode(_big_skin(2400, 1800), fmt, **({"compression": "tiff_deflate"} if fmt == "TIFF" else {}))
    r = client.post("/api/v1/predict", params={"gradcam": "true"}, files={"image": ("p", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["image"] == {"width": 2400, "height": 1800}  # the photo's own size is still reported
    assert body["gradcam"]["available"] is True, body
    png = Image.open(io.BytesIO(base64.b64decode(body["gradcam"]["image"].split(",", 1)[1])))
    assert max(png.size) <= OVERLAY_MAX_SIDE and png.width * 3 == png.height * 4


def test_predict_cam_of_a_large_photo_is_small(cam_model_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    photo = tmp_path / "big.png"
    _big_skin(1800, 2400).save(photo)
    rc = main(["predict", str(photo), "--model", str(cam_model_dir / "model.onnx"), "--cam", str(tmp_path / "cams"),
               "--json"])
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert rc == 0 and result["cam"], result
    with Image.open(result["cam"]) as cam:
        assert max(cam.size) <= OVERLAY_MAX_SIDE and cam.width * 4 == cam.height * 3


# ---- 2. bounded working size, bounded conversions --------------------------------------------------------

def _modes() -> dict[str, tuple[Image.Image, str, int]]:
    """name -> (image, format, bytes per pixel of Pillow's decoded image) of every exotic mode."""
    rgb = _big_skin(600, 400, seed=3)
    grey = np.asarray(rgb.convert("L"))
    alpha = Image.fromarray(np.tile(np.linspace(0, 255, 600, dtype=np.uint8), (400, 1)))
    grey16 = Image.fromarray((grey.astype(np.uint16) * 257 + 100).astype(np.uint16))
    unit = grey.astype(np.float32) / 255
    unit[::7, ::5] = np.nan
    return {
        "RGBA": (Image.merge("RGBA", (*rgb.split(), alpha)), "PNG", 4),
        "LA": (Image.merge("LA", (rgb.convert("L"), alpha)), "PNG", 4),
        "P+transparency": (rgb.convert("P"), "PNG", 1),
        "I;16": (grey16, "PNG", 2),
        "I": (Image.fromarray(grey.astype(np.int32) * 300, "I"), "TIFF", 4),
        "F": (Image.fromarray(unit, "F"), "TIFF", 4),
        "CMYK": (rgb.convert("CMYK"), "TIFF", 4),
        "RGB": (rgb, "WEBP", 4),
    }


def _file(name: str, scale: int = 1) -> tuple[bytes, int]:
    img, fmt, bpp = _modes()[name]
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    kw: dict[str, object] = {"transparency": 0} if name == "P+transparency" else {}
    if fmt == "TIFF":
        kw["compression"] = "tiff_deflate"
    if fmt == "WEBP":
        kw["lossless"] = True
    return _encode(img, fmt, **kw), img.width * img.height * bpp


@pytest.mark.parametrize("name", ["RGBA", "LA", "P+transparency", "I;16", "I", "F", "CMYK", "RGB"])
def test_reduced_decode_is_the_full_decode_reduced(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """min_size reduces every format (not only JPEG) by a whole factor, straight from the decoded mode, band
    by band: the same pixels as converting the whole image and reducing it, and the photo's own size kept."""
    monkeypatch.setattr(dio, "BAND_PIXELS", 5000)  # many bands, a last partial one
    data, _ = _file(name)
    full = load_rgb_bytes(data)
    reduced = load_rgb_bytes(data, min_size=90)
    assert full.size == (600, 400) and reduced.size == (150, 100)  # factor 4: 400 // 90
    assert reduced.info[SOURCE_SIZE_KEY] == (600, 400)
    assert np.array_equal(np.asarray(reduced), np.asarray(full.reduce(4)))
    monkeypatch.setattr(dio, "BAND_PIXELS", 1 << 30)  # one band: the band seams change nothing
    assert np.array_equal(np.asarray(load_rgb_bytes(data)), np.asarray(full))


def test_float_range_is_decided_over_the_whole_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """A float image is [0, 1] only if every finite value is: one value of 3.0 in the last band makes the
    whole image [0, 255], whichever band it lies in."""
    monkeypatch.setattr(dio, "BAND_PIXELS", 64)
    arr = np.full((40, 16), 0.5, np.float32)
    arr[0, 0] = np.inf
    assert np.asarray(load_rgb_bytes(_encode(Image.fromarray(arr, "F"), "TIFF")))[5, 5, 0] == 128
    arr[-1, -1] = 3.0
    out = np.asarray(load_rgb_bytes(_encode(Image.fromarray(arr, "F"), "TIFF")))
    assert out[5, 5, 0] == 0 and out[-1, -1, 0] == 3 and out[0, 0, 0] == 0  # 0.5 of 255 rounds to 0; inf -> 0


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_reduced_decode_predicts_like_the_full_decode(fmt: str) -> None:
    """Reducing a lossless photo to the working size keeps the bundled model's answer, within the tolerance
    measured for JPEG DCT scaling (tests/test_robustness.py: the same box pre-filter before the resize)."""
    from hypoderm.inference import OnnxPredictor, bundled_model
    from hypoderm.inference.preprocess import decode_min_size
    from test_robustness import DRAFT_PARITY_MAX, NEAR_TIE

    if not bundled_model().is_file():
        pytest.skip("no bundled model")
    predictor = OnnxPredictor(bundled_model(), threads=1)
    photo = Image.open(io.BytesIO(phone_like_jpeg(2400, 1800, seed=5))).convert("RGB")
    data = _encode(photo, fmt, **({"compression": "tiff_deflate"} if fmt == "TIFF" else {}))
    min_size = decode_min_size(predictor.spec)  # 2 x resize_size: the model's own need (the gate's may add to it)
    reduced = load_rgb_bytes(data, min_size=min_size)
    assert min_size <= min(reduced.size) < 2 * min_size
    full, small = predictor.predict_image(load_rgb_bytes(data)), predictor.predict_image(reduced)
    assert max(abs(full["probabilities"][k] - small["probabilities"][k]) for k in full["probabilities"]) \
        <= DRAFT_PARITY_MAX
    top = full["top_k"]
    if len(top) > 1 and top[0]["probability"] - top[1]["probability"] > NEAR_TIE:
        assert small["top_k"][0]["label"] == top[0]["label"]


_PEAK_SCRIPT = """
import io, sys
from pathlib import Path
from hypoderm.imaging.io import load_rgb_bytes
def kb(key):
    return next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
data, small = Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]).read_bytes()
min_size = int(sys.argv[3]) or None
load_rgb_bytes(small, min_size=min_size)  # plugins imported, allocator warm
Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
before = kb("VmRSS")
img = load_rgb_bytes(data, max_pixels=10**9, min_size=min_size)
print((kb("VmHWM") - before) * 1024)
"""


def _peak_bytes(data: bytes, small: bytes, min_size: int | None, tmp_path: Path) -> int:
    """Peak memory (RSS high-water mark) of one load_rgb_bytes in a fresh interpreter, in bytes."""
    (tmp_path / "big").write_bytes(data)
    (tmp_path / "small").write_bytes(small)
    env = {**os.environ, "PYTHONPATH": str(Path(dio.__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(tmp_path / "big"), str(tmp_path / "small"),
                          str(min_size or 0)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc/self/clear_refs")
@pytest.mark.parametrize("name", ["RGBA", "P+transparency", "I;16", "F", "CMYK"])
def test_exotic_modes_decode_in_bounded_memory(name: str, tmp_path: Path) -> None:
    """The issue: a 40 MP RGBA image cost 1.03 GB and a float TIFF 1.61 GB (whole-image composites and float64
    copies). Now the decoded image in its own mode is the only full-size buffer: with min_size the peak is that
    plus a few MB of bands, without it that plus the RGB result. (9 MP here; before the fix RGBA took +172 MB
    over its decode, F +250 MB.)"""
    data, native = _file(name, scale=5)  # 3000 x 2000
    small, _ = _file(name)
    slack = 24 << 20
    assert _peak_bytes(data, small, 256, tmp_path) <= native + slack
    assert _peak_bytes(data, small, None, tmp_path) <= native + 3000 * 2000 * 4 + slack


def test_webp_pixel_limit_accounts_for_its_decode_copies() -> None:
    """Pillow decodes WebP through four full-size copies (a 40 MP one took 640 MB), so its pixel limit is a
    quarter of the others'; the refusal says why and what to do."""
    data = _encode(Image.new("RGB", (1000, 1000), (200, 150, 120)), "WEBP")
    assert load_rgb_bytes(data, max_pixels=4_000_000).size == (1000, 1000)
    with pytest.raises(ImageLoadError) as e:
        load_rgb_bytes(data, max_pixels=3_999_999)
    assert e.value.reason == "too_large" and "WEBP" in str(e.value) and "JPEG or PNG" in str(e.value)
    assert load_rgb_bytes(_encode(Image.new("RGB", (1000, 1000)), "PNG"), max_pixels=1_000_000).size == (1000, 1000)


# ---- 3. stalled uploads: counted apart from predictions, bounded per client and in total ----------------------

@pytest.fixture
def small_server(model_dir: Path):
    """The app on a real uvicorn (serve's options) in a thread: 2 predictions, 6 uploads, 3 per client."""
    import argparse
    import socket
    import threading
    import time

    import uvicorn

    from hypoderm.app import limits
    from hypoderm.commands import serve as serve_command

    parser = argparse.ArgumentParser()
    serve_command.add_arguments(parser)
    args = parser.parse_args([])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(model_dir, limits=Limits(limit_concurrency=2, max_uploads=6, max_uploads_per_client=3,
                                              body_timeout=60))
    opts = limits.uvicorn_options(serve_command.limits_from_args(args))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, **opts))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started and thread.is_alive():
        time.sleep(0.05)
    yield port
    srv.should_exit = True
    thread.join(30)


def _stall(port: int, source: str) -> object:
    """A client at `source` (a loopback address) that sends 1 KB of a declared 5 MB upload and stops."""
    import socket

    sock = socket.socket()
    sock.settimeout(30)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                 b"Content-Length: 5000000\r\n\r\n" + b"\x89PNG\r\n\x1a\n" + bytes(1016))
    return sock


def _health(port: int) -> dict:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=30).json()


def _until_uploads(port: int, n: int, field: str = "uploads") -> dict:
    """Health once the server has seen `n` uploads arriving (synchronisation, not a timing); `field`
    "slow_uploads": once it has judged `n` of them slow (arriving slower than its rate for SLOW_MIN_AGE_S)."""
    import time

    for _ in range(600):
        body = _health(port)
        if (body["load"][field] if field == "slow_uploads" else body["load"][field]["in_progress"]) == n:
            return body
        time.sleep(0.05)
    raise AssertionError(f"the server never saw {n} uploads: {body}")


def _answer(sock: object) -> bytes:
    """The server's whole answer on `sock` (headers and the Content-Length body)."""
    import socket

    assert isinstance(sock, socket.socket)
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < int(
                next((ln.split(b":")[1] for ln in data.lower().split(b"\r\n") if ln.startswith(b"content-length:")),
                     b"0")):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


@pytest.mark.skipif(sys.platform != "linux", reason="binds clients to several loopback addresses (Linux)")
def test_stalled_uploads_do_not_lock_out_real_predictions(small_server: int) -> None:
    """The issue: 128 connections each sending 1 KB of a 5 MB body made every real prediction a 503 for a minute
    while /health said ok. Here the prediction limit is 2; five stalled uploads from two other addresses hold no
    prediction slot, a real photo is answered, and /health shows the uploads."""
    import httpx

    port = small_server
    stalled = [_stall(port, "127.0.0.2") for _ in range(3)] + [_stall(port, "127.0.0.3") for _ in range(2)]
    try:
        body = _until_uploads(port, 5, "slow_uploads")
        assert body["status"] == "ok" and body["load"]["predictions"] == {"in_progress": 0, "limit": 2}
        assert body["load"]["clients_at_upload_limit"] == 1
        r = httpx.post(f"http://127.0.0.1:{port}/api/v1/predict", files={"image": ("p.png", _encode(
            _big_skin(80, 60), "PNG"), "image/png")}, timeout=60)
        assert r.status_code == 200, r.text
    finally:
        for sock in stalled:
            sock.close()  # type: ignore[attr-defined]


@pytest.mark.skipif(sys.platform != "linux", reason="binds clients to several loopback addresses (Linux)")
def test_uploads_are_bounded_per_client_and_in_total(small_server: int) -> None:
    port = small_server
    held = [_stall(port, "127.0.0.2") for _ in range(3)]
    try:
        _until_uploads(port, 3)
        extra = _stall(port, "127.0.0.2")  # a 4th from the same address: refused at once
        held.append(extra)
        answer = _answer(extra)
        assert answer.startswith(b"HTTP/1.1 429") and b'"too_many_uploads"' in answer, answer[:300]
        held += [_stall(port, "127.0.0.3") for _ in range(3)]  # another address has its own 3
        body = _until_uploads(port, 6)
        assert body["status"] == "busy" and body["load"]["saturated"] == ["uploads"]  # /health tells
        late = _stall(port, "127.0.0.4")  # all 6 upload slots taken: 503 for anyone new
        held.append(late)
        answer = _answer(late)
        assert answer.startswith(b"HTTP/1.1 503") and b'"server_busy"' in answer, answer[:300]
    finally:
        for sock in held:
            sock.close()  # type: ignore[attr-defined]
    assert _until_uploads(port, 0)["status"] == "ok"  # closed uploads free their slots


# ---- 4./5. model sidecars: every field checked, against the graph too; output always JSON ---------------

def _strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, as every other JSON parser does."""
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _edited_model(model_dir: Path, tmp_path: Path, edit: dict[str, object]) -> Path:
    """A copy of the test model whose sidecar has `edit` applied ("input.std": value sets a nested field);
    written with Python's json, which writes NaN / Infinity tokens as a hand edit might."""
    out = tmp_path / "edited"
    out.mkdir(exist_ok=True)
    (out / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    md = json.loads((model_dir / "model.json").read_text())
    for key, value in edit.items():
        *parents, leaf = key.split(".")
        node = md
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    (out / "model.json").write_text(json.dumps(md))
    return out


BAD_SIDECARS = {  # edit -> the field the refusal must name (the test model: 64 px, 3 classes, no Grad-CAM)
    "threshold NaN": ({"abstain_threshold": float("nan")}, "abstain_threshold"),
    "threshold -1": ({"abstain_threshold": -1}, "abstain_threshold"),
    "threshold 1.5": ({"abstain_threshold": 1.5}, "abstain_threshold"),
    "threshold text": ({"abstain_threshold": "0.6"}, "abstain_threshold"),
    "temperature text": ({"temperature": "abc"}, "temperature"),
    "temperature null": ({"temperature": None}, "temperature"),
    "temperature NaN": ({"temperature": float("nan")}, "temperature"),
    "temperature denormal": ({"temperature": 1e-320}, "temperature"),
    "temperature inf": ({"temperature": float("inf")}, "temperature"),
    "temperature true": ({"temperature": True}, "temperature"),
    "std 0": ({"input.std": [0.229, 0, 0.225]}, "input.std"),
    "std NaN": ({"input.std": [0.229, float("nan"), 0.225]}, "input.std"),
    "mean text": ({"input.mean": ["a", 0.4, 0.4]}, "input.mean"),
    "size text": ({"input.size": "64"}, "input.size"),
    "size mismatch": ({"input.size": 96, "input.resize_size": 110}, "input.size"),
    "resize huge": ({"input.resize_size": 100000}, "input.resize_size"),
    "crop centre": ({"input.crop": "center"}, "input.crop"),  # issue 29: one rule, no other is run silently
    "duplicate classes": ({"class_names": ["normal_skin", "vitiligo", "vitiligo"]}, "class_names"),
    "one class": ({"class_names": ["vitiligo"]}, "at least two classes"),
    "no classes": ({"class_names": []}, "class_names"),
    "empty class name": ({"class_names": ["normal_skin", "", "vitiligo"]}, "class_names"),
    "too many classes": ({"class_names": ["a", "b", "c", "d"]}, "class_names lists 4 classes"),
    "too few classes": ({"class_names": ["a", "b"]}, "class_names lists 2 classes"),
    "unknown output": ({"output.name": "probabilities"}, "output.name"),
    "input name": ({"input.name": "pixels"}, "input.name"),
    "precision typo": ({"precision": "int8_weights"}, "precision"),
    "ood NaN": ({"ood.skin_fraction_min": float("nan")}, "ood.skin_fraction_min"),
    # found by the sidecar fuzz: validate_ood takes any int >= 32, and 2**63 became an internal error per photo
    "gate size 2**63": ({"ood.gate": {**DEFAULT_GATE, "size": 2**63}}, "ood.gate.size"),
    "quality text": ({"quality": "broken"}, "quality"),  # a string here made predict crash (exit 3)
    "model name number": ({"model_name": 5}, "model_name"),
}


@pytest.mark.parametrize("case", list(BAD_SIDECARS))
def test_bad_sidecar_is_refused_naming_the_field(model_dir: Path, tmp_path: Path, case: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main
    from hypoderm.inference import ModelLoadError, OnnxPredictor

    edit, field = BAD_SIDECARS[case]
    bad = _edited_model(model_dir, tmp_path, edit)
    with pytest.raises(ModelLoadError, match=field.replace(".", r"\.")):
        OnnxPredictor(bad / "model.onnx")
    photo = tmp_path / "p.png"
    _big_skin(80, 60).save(photo)
    assert main(["predict", str(photo), "--model", str(bad / "model.onnx"), "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and field in out.err and "Traceback" not in out.err
    assert main(["serve", "--model", str(bad), "--port", "1"]) == 2  # refused before it listens
    err = capsys.readouterr().err
    assert field in err and "Traceback" not in err


def test_a_sidecar_without_crop_follows_the_square_rule(model_dir: Path, tmp_path: Path) -> None:
    """Issue 29: exports write `input.crop = "square"`; a sidecar written before (no `crop`) loads and gives the
    same answers, by the same rule."""
    from hypoderm.inference import OnnxPredictor

    md = json.loads((model_dir / "model.json").read_text())
    assert md["input"]["crop"] == "square"
    old = tmp_path / "old"
    old.mkdir()
    (old / "model.onnx").write_bytes((model_dir / "model.onnx").read_bytes())
    del md["input"]["crop"]
    (old / "model.json").write_text(json.dumps(md))
    photo = _big_skin(700, 500)
    new_answer = OnnxPredictor(model_dir / "model.onnx").predict_image(photo)
    old_predictor = OnnxPredictor(old / "model.onnx")
    assert "crop" not in old_predictor.metadata["input"] and old_predictor.spec.crop == "square"
    assert old_predictor.predict_image(photo) == new_answer


def test_nan_in_a_descriptive_field_loads_and_prints_valid_json(model_dir: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A NaN metric (e.g. an AUROC with one class absent) harms no answer: it loads, and is shown as null
    (a guard for the strict checks above, which must not refuse it)."""
    from hypoderm.cli import main

    edited = _edited_model(model_dir, tmp_path, {"metrics": {"val/auroc": float("nan"), "test/macro_f1": 0.5}})
    photo = tmp_path / "p.png"
    _big_skin(80, 60).save(photo)
    assert main(["predict", str(photo), "--model", str(edited / "model.onnx"), "--json"]) == 0
    doc = _strict_json(capsys.readouterr().out)
    assert isinstance(doc, dict) and doc["results"][0]["status"] in ("ok", "uncertain", "not_skin")
    r = TestClient(create_app(edited)).get("/api/v1/model")
    assert r.status_code == 200 and _strict_json(r.text)["metrics"] == {"val/auroc": None,  # type: ignore[index]
                                                                          "test/macro_f1": 0.5}


def test_export_writes_no_nan_and_refuses_a_one_class_model(tmp_path: Path) -> None:
    from hypoderm.inference import ModelLoadError
    from hypoderm.inference.metadata import to_jsonable

    assert to_jsonable({"auroc": np.float64("nan"), "f1": [1.0, float("inf")]}) == {"auroc": None, "f1": [1.0, None]}
    with pytest.raises(ModelLoadError, match="at least two classes"):
        build_model_dir(tmp_path, classes=["vitiligo"])


# ---- 6. files are checked before they are read ---------------------------------------------------------------

_READ_UNDER_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GiB of address space: a 3 GiB read cannot fit
from hypoderm.imaging.io import ImageLoadError, load_rgb
for path in sys.argv[1:]:
    try:
        load_rgb(path)
        print(path, "loaded")
    except ImageLoadError as e:
        print(path, e.reason, e)
"""


def test_huge_files_and_devices_are_refused_without_reading(tmp_path: Path) -> None:
    """The issue: a 3 GiB video in the photo folder cost predict 3.24 GB before being called "not an image", and
    `predict /dev/zero` read until memory ran out. Under a 1 GiB address-space limit, neither is read."""
    video, blob = tmp_path / "clip.jpg", tmp_path / "blob.png"
    for path, head in ((video, b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"), (blob, b"\x01" * 64)):
        with open(path, "wb") as f:
            f.write(head)
            f.truncate(3 << 30)  # sparse: no disk space used
    env = {**os.environ, "PYTHONPATH": str(Path(dio.__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-c", _READ_UNDER_LIMIT, str(video), str(blob), "/dev/zero"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"{video} not_image not an image file (MP4/MOV video)")
    assert lines[1].startswith(f"{blob} too_large file too large: {3 << 30} bytes > limit")
    assert lines[2].startswith("/dev/zero not_a_file") and "character device" in lines[2]


def test_file_limit_is_checked_before_reading(tmp_path: Path) -> None:
    photo = tmp_path / "p.png"
    photo.write_bytes(_encode(_big_skin(64, 48), "PNG"))
    assert dio.load_rgb(photo).size == (64, 48)
    with pytest.raises(ImageLoadError) as e:
        dio.load_rgb(photo, max_bytes=photo.stat().st_size - 1)
    assert e.value.reason == "too_large" and "file too large" in str(e.value)


# ---- 7. odd folder entries are reported, never opened ------------------------------------------------------

@pytest.fixture
def odd_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    _big_skin(80, 60).save(folder / "good.png")
    _big_skin(80, 60, seed=1).save(folder / "sub" / "nested.png")
    (folder / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    (folder / "ping.jpg").symlink_to(folder / "pong.jpg")
    (folder / "pong.jpg").symlink_to(folder / "ping.jpg")
    (folder / "linked_folder").symlink_to(folder / "sub")
    (folder / "link_to_good.png").symlink_to(folder / "good.png")
    os.mkfifo(folder / "pipe.jpg")
    (folder / ".hidden.jpg").write_bytes(b"hidden files are skipped on purpose")
    return folder


EXPECTED_ODD = {"broken.jpg": "broken symbolic link", "loop.jpg": "symbolic link loop",
                "ping.jpg": "symbolic link loop", "pong.jpg": "symbolic link loop",
                "linked_folder": "symbolic link to a folder", "pipe.jpg": "named pipe (FIFO)"}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symbolic links (POSIX)")
def test_odd_folder_entries_are_reported_with_their_reason(model_dir: Path, odd_folder: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from hypoderm.cli import main

    model = str(model_dir / "model.onnx")
    assert main(["predict", str(odd_folder), "--model", model, "--json"]) == 1  # not "every file was predicted"
    results = {Path(r["file"]).name: r for r in _strict_json(capsys.readouterr().out)["results"]}  # type: ignore
    assert set(results) == {"good.png", "nested.png", "link_to_good.png", *EXPECTED_ODD}
    for name, words in EXPECTED_ODD.items():
        assert results[name]["status"] == "error" and results[name]["reason"] == "not_a_file", results[name]
        assert words in results[name]["error"], results[name]
    assert all(results[n]["status"] != "error" for n in ("good.png", "nested.png", "link_to_good.png"))
    assert main(["predict", str(odd_folder), "--model", model]) == 1
    out = capsys.readouterr().out
    assert "6 of 9 files not predicted: 6 not_a_file." in out and "pipe.jpg: ERROR: not a regular file" in out


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs (POSIX)")
def test_a_fifo_named_on_the_command_line_does_not_hang(model_dir: Path, tmp_path: Path) -> None:
    """The issue: `predict pipe` hung forever in open(). A subprocess, so that a hang fails the test."""
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(Path(dio.__file__).resolve().parents[2])}
    out = subprocess.run([sys.executable, "-m", "hypoderm.cli", "predict", str(fifo), "--model",
                          str(model_dir / "model.onnx"), "--json"], capture_output=True, text=True, env=env, timeout=90)
    assert out.returncode == 1, out.stderr[-2000:]
    result = _strict_json(out.stdout)["results"][0]  # type: ignore[index]
    assert result["reason"] == "not_a_file" and "named pipe" in result["error"]


# ---- 9. the HEIC message tells the truth about AVIF ------------------------------------------------------------

def test_heic_is_refused_and_avif_is_decoded() -> None:
    from PIL import features

    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    with pytest.raises(ImageLoadError) as e:
        load_rgb_bytes(heic)
    assert e.value.reason == "not_image" and "HEIC photo, not supported" in str(e.value)
    assert "AVIF" not in str(e.value).split(";")[0]  # the old message said "HEIC/AVIF ..., not supported"
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF decoder")
    avif = _encode(_big_skin(64, 48), "AVIF")
    assert load_rgb_bytes(avif).size == (64, 48)
    with pytest.raises(ImageLoadError) as e:
        load_rgb_bytes(avif[:80] + bytes(200))  # a damaged AVIF is corrupt, not "not supported"
    assert e.value.reason == "corrupt" and "AVIF" in str(e.value)
